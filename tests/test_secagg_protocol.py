"""SecAgg+ end to end among in-memory clients: masks cancel exactly for every surviving set the
threshold allows, with dropouts at each stage; beyond it the round aborts; clients refuse
requests that would unmask one of them."""
from __future__ import annotations

import numpy as np
import pytest
from flwr.app import RecordDict
from hypothesis import given, settings, strategies as st

import secagg_sim as S
from fedembed.secagg import client as proto, messages as msg
from fedembed.secagg.server import SecAggAbort
from fedembed.updates import ClientUpdate

STAGE_NAMES = ("keys", "share", "mask", "unmask")


@st.composite
def dropouts(draw, complete: bool):
    n = draw(st.integers(3, 9))
    k = n - 1 if complete else draw(st.sampled_from([k for k in (2, 4, 6) if k < n - 1] or [n - 1]))
    t = draw(st.integers((k + 1) // 2 + 1, k + 1))
    drop = {s: set() for s in STAGE_NAMES}
    budget = (k + 1) - t if complete else n
    order = draw(st.permutations(range(n)))
    count = draw(st.integers(0, budget))
    for pid in order[:count]:
        drop[draw(st.sampled_from(STAGE_NAMES))].add(pid)
    ring = draw(st.sampled_from([32, 64]))
    return n, k, t, drop, ring


@settings(max_examples=60, deadline=None)
@given(case=dropouts(complete=True))
def test_up_to_the_threshold_the_sum_is_the_survivors_quantized_sum_bit_for_bit(case):
    """Complete graph (SecAgg): any n − t dropouts, spread over any stages, are survived exactly."""
    n, k, t, drop, ring = case
    ups = S.updates(n, seed=n * 7 + t)
    p = S.params(n, k, t, ring)
    srv, total = S.run(ups, p, drop)
    dropped = set().union(*(drop[s] for s in ("keys", "share", "mask")))
    assert srv.u2 == set(range(n)) - dropped
    assert (total == S.expected_sum(ups, srv.u2, p)).all()


@settings(max_examples=60, deadline=None)
@given(case=dropouts(complete=False))
def test_sparse_graph_either_sums_exactly_or_aborts(case):
    n, k, t, drop, ring = case
    ups = S.updates(n, seed=n * 11 + t)
    p = S.params(n, k, t, ring)
    try:
        srv, total = S.run(ups, p, drop)
    except SecAggAbort:
        return
    assert (total == S.expected_sum(ups, srv.u2, p)).all()


def test_sparse_graph_succeeds_whenever_the_threshold_allows():
    rng = np.random.default_rng(3)
    done = 0
    for trial in range(25):
        n, k = 12, 4
        t = 3
        drop = {s: set(rng.choice(n, size=rng.integers(0, 2), replace=False).tolist()) for s in STAGE_NAMES}
        ups = S.updates(n, seed=trial)
        p = S.params(n, k, t)
        try:
            srv, total = S.run(ups, p, drop)
        except SecAggAbort as exc:
            assert "needed" in str(exc) or "fewer" in str(exc)
            continue
        done += 1
        assert (total == S.expected_sum(ups, srv.u2, p)).all()
    assert done > 10


@pytest.mark.parametrize("stage", ["share", "mask", "unmask"])
def test_beyond_the_threshold_the_round_aborts(stage):
    n, t = 5, 4
    ups = S.updates(n)
    with pytest.raises(SecAggAbort, match="needed|fewer"):
        S.run(ups, S.params(n, threshold=t, min_clients=3 if stage != "unmask" else 1),
              {stage: {0, 1, 2}})


def _round(n=4):
    ups = S.updates(n)
    states = {p: RecordDict() for p in ups}
    from fedembed.secagg.quantize import Layout
    from fedembed.secagg.server import KeyBook, ServerRound

    book = KeyBook({p: bytes(msg.get(proto.on_keys(msg.record(round=1), states[p], p))["c_pk"]) for p in ups})
    srv = ServerRound(list(ups), book, S.params(n), 1, Layout(S.SHAPES))
    for p in ups:
        srv.on_share(p, proto.on_share(srv.share_content(p), states[p], p))
    for p in ups:
        y = proto.on_mask(RecordDict({msg.SECAGG: srv.mask_record(p)}), states[p], p, S.secure(ups[p], S.SHAPES)).vector
        srv.add_masked(p, y)
    return srv, states


def test_a_client_never_reveals_both_secrets_of_a_peer_nor_answers_twice():
    srv, states = _round()
    ask = msg.record(round=1, survivors=[0, 1, 2, 3], dropped=[1])
    with pytest.raises(proto.SecAggClientError, match="both survived and dropped"):
        proto.on_unmask(ask, states[0], 0)
    proto.on_unmask(srv.unmask_content(0), states[0], 0)
    with pytest.raises(proto.SecAggClientError, match="no secure-aggregation state"):
        proto.on_unmask(srv.unmask_content(0), states[0], 0)


def test_shares_asked_ahead_ride_the_unmask_answer_and_a_refusal_keeps_it():
    """secagg.share_ahead: an unmask message also carries the next round's share request. The
    answer holds this round's unmask shares and the next round's share answer (fresh secrets),
    or why there is none; the round still unmasks to the clients' sum."""
    from fedembed.secagg.quantize import Layout
    from fedembed.secagg.server import ServerRound

    ups = S.updates(4)
    srv, states = _round()
    nxt = ServerRound([0, 1, 2, 3], srv.book, S.params(4), 2, Layout(S.SHAPES))
    replies = {}
    for p in range(4):
        ask = srv.unmask_content(p)
        request = msg.get(nxt.share_content(p))
        if p == 1:                                   # the server holds a stale channel key for client 1
            request["c_pk"] = bytes(32)
        ask[msg.NEXT] = request
        replies[p] = proto.on_unmask(ask, states[p], p)
        srv.on_unmask(p, replies[p])
    assert "stale channel key" in str(replies[1].config_records[msg.NEXT][msg.NEXT_ERROR])
    assert msg.get(replies[1])["b_from"] == [0, 1, 2, 3]          # its unmask answer came all the same
    for p in (0, 2, 3):
        nxt.on_share(p, RecordDict({msg.SECAGG: replies[p].config_records[msg.NEXT]}))
        assert int(states[p].config_records[msg.STATE_ROUND]["round"]) == 2
    assert nxt.u1 == {0, 2, 3} and msg.STATE_ROUND not in states[1].config_records
    assert len({bytes(states[p].config_records[msg.STATE_ROUND]["b"]) for p in (0, 2, 3)}) == 3
    sums, _, _ = srv.quantizer.decode_all(srv.finish()[0])
    step = S.params(4).table_range / (2 ** (S.params(4).bits - 1) - 1)
    np.testing.assert_allclose(sums["t"], sum(u.tables["t"] for u in ups.values()), atol=4 * step, rtol=0)


def test_a_client_refuses_to_unmask_when_too_few_peers_survived():
    srv, states = _round()
    with pytest.raises(proto.SecAggClientError, match="fewer than the threshold"):
        proto.on_unmask(msg.record(round=1, survivors=[0], dropped=[1, 2, 3]), states[0], 0)


def test_the_server_refuses_a_vector_of_the_wrong_ring_or_size():
    srv, _ = S.run(S.updates(3), S.params(3))
    from fedembed.secagg.quantize import Layout
    from fedembed.secagg.server import KeyBook, ServerRound

    fresh = ServerRound([0, 1, 2], KeyBook({p: b"k" * 32 for p in range(3)}), S.params(3), 1, Layout(S.SHAPES))
    fresh.u1 = {0, 1, 2}
    with pytest.raises(proto.SecAggClientError, match="expected uint32"):
        fresh.add_masked(0, np.zeros(fresh.total.size, dtype=np.uint64))
    with pytest.raises(proto.SecAggClientError, match="not asked"):
        fresh.add_masked(7, np.zeros(fresh.total.size, dtype=np.uint32))


def test_distributed_noise_shares_sum_to_the_calibrated_noise_over_the_survivors():
    """m = 5 clients each add N(0, σ²/(f − 1)) before dithered quantization, calibrated for a
    survivor floor f = 4; one drops after calibration: the unmasked, de-dithered sum of zero
    updates is N(0, σ²·m'/(f − 1)) per coordinate (plus the tiny uniform rounding error), centred;
    the ledger is charged the sum without the target's share, σ²·(m' − 1)/(f − 1) = σ² here."""
    from fedembed.privacy.distributed import effective_multiplier, share_std

    m, floor, sigma = 5, 4, 0.2
    shapes = {"t": (20_000, 5)}
    ups = {pid: ClientUpdate({"t": np.zeros(shapes["t"], np.float32)}, {"t": np.zeros(shapes["t"][0], np.float32)})
           for pid in range(m)}
    p = S.params(m, ring=32, bits=20)
    srv, total, dither_sum = S.run(ups, p, {"mask": {4}}, noise_std=share_std(sigma, floor), dither=True,
                                   shapes=shapes)
    tables, _ = srv.quantizer.decode(total, dither_sum)
    got = tables["t"].ravel()
    want = sigma * np.sqrt(len(srv.u2) / (floor - 1))                  # σ·√(4/3): every survivor's share
    assert len(srv.u2) == 4
    assert abs(got.std() / want - 1) < 0.02 and abs(got.mean()) < 4 * want / np.sqrt(got.size)
    assert effective_multiplier(1.0, len(srv.u2), floor) == 1.0       # without the target: exactly z
