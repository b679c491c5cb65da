"""Clients do not take the server's protocol parameters on trust (fedembed.secagg.guard): a
malicious server that sends a low threshold, no peers, too few peers, strangers as peers or a
second mask request is refused, and the split-view attack a low threshold allows cannot recover
a client's update."""
from __future__ import annotations

import numpy as np
import pytest
from flwr.app import RecordDict
from hypothesis import given, settings, strategies as st

import secagg_sim as S
from fedembed.secagg import client as proto, guard, messages as msg, shamir
from fedembed.secagg.prg import Expander
from fedembed.secagg.quantize import Layout
from fedembed.secagg.server import KeyBook, ServerRound


class MaliciousServer(ServerRound):
    """The honest server's bookkeeping, with whatever threshold the attacker wants to send."""

    def __init__(self, n: int, threshold: int, states: dict[int, RecordDict]) -> None:
        book = KeyBook({p: bytes(msg.get(proto.on_keys(msg.record(round=1), states[p], p))["c_pk"])
                        for p in range(n)})
        honest = S.params(n)                       # a threshold the server's own check accepts
        super().__init__(list(range(n)), book, honest, 1, Layout(S.SHAPES))
        self.lie = threshold

    def share_content(self, pid: int) -> RecordDict:
        content = super().share_content(pid)
        msg.get(content)["threshold"] = self.lie
        return content


def _shared(n: int, t: int):
    """A malicious server with every client's share answer (the clients would refuse a t they see as too low)."""
    states = {p: RecordDict() for p in range(n)}
    srv = MaliciousServer(n, t, states)
    for p in range(n):
        srv.on_share(p, proto.on_share(srv.share_content(p), states[p], p))
    return srv, states


def _masked(srv: ServerRound, states, ups) -> dict[int, np.ndarray]:
    out = {}
    for p in srv.pids:
        y = proto.on_mask(RecordDict({msg.SECAGG: srv.mask_record(p)}), states[p], p, S.secure(ups[p], S.SHAPES),
                          np.random.default_rng(1000 + p)).vector
        srv.add_masked(p, y)
        out[p] = y
    return out


def split_view(n: int = 6, t: int = 3, target: int = 0):
    """The attack: tell half of the target's holders it survived (their shares of its seed b) and the
    other half it dropped (their shares of its mask key s); with both, strip every mask off its vector.
    Returns the target's recovered quantized update, or raises (a refusal, too few shares)."""
    ups = S.updates(n, seed=5)
    srv, states = _shared(n, t)
    y = _masked(srv, states, ups)
    everyone = sorted(srv.u2)
    b_shares, s_shares = {}, {}
    half = [p for p in everyone if p != target][: (n - 1) // 2]
    for p in everyone:
        told_survived = p == target or p in half
        survivors = everyone if told_survived else [v for v in everyone if v != target]
        reply = msg.get(proto.on_unmask(msg.record(round=1, survivors=survivors,
                                                   dropped=[] if told_survived else [target]), states[p], p))
        for owner, share in zip(msg.ints(reply, "b_from"), msg.blobs(reply, "b_shares")):
            if owner == target:
                b_shares[p + 1] = share
        for owner, share in zip(msg.ints(reply, "s_from"), msg.blobs(reply, "s_shares")):
            if owner == target:
                s_shares[p + 1] = share
    b = shamir.combine(b_shares, t)
    s_sk = shamir.combine(s_shares, t)
    x = y[target].copy()
    ex = Expander()
    ex.add(x, proto.self_mask_key(b, srv.nonce), -1)
    for v in srv.graph[target]:
        sign = 1 if target < v else -1
        ex.add(x, proto.pair_mask_key(s_sk, srv.s_pk[v], srv.nonce), -sign)
    return x, S.expected_sum(ups, [target], srv.p)


def test_the_split_view_attack_is_real_when_a_client_trusts_a_low_threshold(monkeypatch):
    """Without the threshold check, t = 3 of 6 holders lets the server rebuild both secrets of
    client 0 from two disjoint halves and read its update exactly."""
    monkeypatch.setattr(guard, "check_share", lambda *a, **k: None)
    recovered, truth = split_view(6, 3)
    assert (recovered == truth).all()


def test_a_client_refuses_a_threshold_at_most_half_its_holders_so_the_split_view_gets_nothing():
    with pytest.raises(proto.Refused, match=r"threshold t = 3 for 6 share holders"):
        split_view(6, 3)


def test_with_a_legal_threshold_the_split_view_cannot_rebuild_both_secrets():
    """t = 4 of 6: each holder gives one of the two shares of client 0; neither half reaches t."""
    with pytest.raises(shamir.ShamirError, match="cannot reconstruct"):
        split_view(6, 4)


@settings(max_examples=40, deadline=None)
@given(k1=st.integers(2, 12), data=st.data())
def test_the_share_check_accepts_exactly_the_thresholds_above_half_the_holders(k1, data):
    t = data.draw(st.integers(0, k1 + 2))
    holders = list(range(1, k1))
    ok = 2 * t > k1 and t <= k1
    try:
        guard.check_share(0, t, holders, [bytes(32)] * len(holders))
    except proto.Refused:
        assert not ok
    else:
        assert ok


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.__setitem__("holders", [1, 1, 2]), "repeat a holder"),
    (lambda c: c.__setitem__("holders", [0, 1, 2]), "include this client"),
    (lambda c: c.__setitem__("holder_keys", msg.blobs(c, "holder_keys")[:1]), "channel keys for"),
    (lambda c: c.__setitem__("threshold", 9), "exceeds"),
])
def test_a_malformed_share_request_is_refused(edit, match):
    states = {p: RecordDict() for p in range(4)}
    srv = MaliciousServer(4, 3, states)
    content = srv.share_content(0)
    edit(msg.get(content))
    with pytest.raises(proto.Refused, match=match):
        proto.on_share(content, states[0], 0)
    assert msg.STATE_ROUND not in states[0].config_records       # nothing was made or kept


def _mask_request(srv, states, p, edit=None):
    record = srv.mask_record(p)
    if edit is not None:
        edit(record)
    return proto.on_mask(RecordDict({msg.SECAGG: record}), states[p], p, S.secure(S.updates(4)[p], S.SHAPES))


@pytest.mark.parametrize("edit, match", [
    (lambda r: (r.__setitem__("peers", []), r.__setitem__("peer_keys", [])), "names no peer"),
    (lambda r: (r.__setitem__("peers", [1]), r.__setitem__("peer_keys", msg.blobs(r, "peer_keys")[:1])),
     r"fewer than t − 1 = 2"),
    (lambda r: r.__setitem__("peers", [1, 2, 7]), "not among the holders"),
    (lambda r: r.__setitem__("peer_keys", msg.blobs(r, "peer_keys")[:2]), "lacks a peer's key"),
])
def test_a_mask_request_with_no_or_too_few_or_stranger_peers_is_refused(edit, match):
    srv, states = _shared(4, 3)
    with pytest.raises(proto.Refused, match=match):
        _mask_request(srv, states, 0, edit)


def test_a_second_mask_request_in_a_round_is_refused():
    """Two vectors under different peer sets would differ by the left-out peers' masks."""
    srv, states = _shared(4, 3)
    _mask_request(srv, states, 0)
    with pytest.raises(proto.Refused, match="second mask request for round 1"):
        _mask_request(srv, states, 0, lambda r: (r.__setitem__("peers", [1, 2]),
                                                  r.__setitem__("peer_keys", msg.blobs(r, "peer_keys")[:2])))


def test_a_refused_mask_request_is_a_dropout_of_that_stage_for_the_server(tmp_path, write_scenario):
    """Through the ClientApp: a refusal becomes an error reply, and the round goes on without that client."""
    from fedembed import compose, metrics
    from fedembed.run import federate
    from inprocess_grid import InProcessGrid

    grid = InProcessGrid(4)
    real = grid._answer

    def answer(m):      # the server names no peer for client 3 in round 1's mask stage
        if m.metadata.message_type == msg.MASK and grid.nodes[m.metadata.dst_node_id] == 3:
            msg.get(m.content)["peers"], msg.get(m.content)["peer_keys"] = [], []
        return real(m)
    grid._answer = answer
    cfg = compose.load(write_scenario(partition={"num_clients": 4}, federation={"rounds": 1},
                                      secagg={"enabled": True}))
    federate(grid, cfg, tmp_path / "run", progress=False)
    row = metrics.read(tmp_path / "run")[0]
    assert row["secagg"]["dropped"]["mask"] == 1 and row["clients_ok"] == 3
    refused = [r for t, r in grid.replies if t == msg.MASK and r.has_error()]
    assert len(refused) == 1 and "names no peer" in refused[0].error.reason

