"""The commitment to each client's self-mask seed (fedembed.secagg.commit): one corrupted share
aborts the round naming the client, instead of silently changing the aggregate."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

import secagg_sim as S
from fedembed.secagg import commit, shamir
from fedembed.secagg.server import SecAggAbort


def _shift(shares: dict[int, bytes], x: int, delta: int, threshold: int) -> bytes:
    """Share x moved so that the first `threshold` shares now interpolate to secret + delta: what a
    holder that wants a *plausible* wrong seed sends (a random corruption would not even be a 32-byte
    value, which the length check catches)."""
    used = list(shares)[:threshold]
    lagrange = 1
    for xj in used:
        if xj != x:
            lagrange = lagrange * (-xj) * pow(x - xj, -1, shamir.P) % shamir.P
    y = (int.from_bytes(shares[x], "big") + delta * pow(lagrange, -1, shamir.P)) % shamir.P
    return y.to_bytes(shamir.SHARE_BYTES, "big")


def corrupt(owner: int, pick: int, delta: int, used: list[int] | None = None):
    """A `before_finish` hook: one of the shares of `owner`'s seed the server will use, shifted by `delta`."""
    def hook(srv) -> None:
        table = srv.b_shares[owner]
        chosen = list(table)[:srv.p.threshold]
        x = chosen[pick % len(chosen)]
        table[x] = _shift(table, x, delta, srv.p.threshold)
        if used is not None:
            used.append(x - 1)
    return hook


@settings(max_examples=15, deadline=None)
@given(owner=st.integers(0, 4), pick=st.integers(0, 10), delta=st.integers(1, 2 ** 64))
def test_one_corrupted_seed_share_aborts_the_round_naming_its_client(owner, pick, delta):
    with pytest.raises(SecAggAbort, match=rf"client {owner}'s self-mask seed.*does not match its commitment"):
        S.run(S.updates(5), S.params(5), before_finish=corrupt(owner, pick, delta))


def test_without_the_commitment_the_same_corruption_silently_changes_the_sum(monkeypatch):
    """What the check prevents: the shifted seed is a valid 32-byte seed, so the round would 'succeed'."""
    monkeypatch.setattr("fedembed.secagg.server.opens", lambda *a: True)
    ups, p = S.updates(5), S.params(5)
    srv, total = S.run(ups, p, before_finish=corrupt(0, 0, 1))
    assert not (total == S.expected_sum(ups, srv.u2, p)).all()


@settings(max_examples=30, deadline=None)
@given(b=st.binary(min_size=32, max_size=32), other=st.binary(min_size=32, max_size=32),
       pid=st.integers(0, 10 ** 6))
def test_a_commitment_opens_with_its_seed_only(b, other, pid):
    nonce = os.urandom(16)
    c = commit.seed_commitment(b, nonce, pid)
    assert len(c) == 32 and commit.opens(c, b, nonce, pid)
    assert commit.opens(c, other, nonce, pid) == (other == b)
    assert not commit.opens(c, b, os.urandom(16), pid) and not commit.opens(c, b, nonce, pid + 1)
