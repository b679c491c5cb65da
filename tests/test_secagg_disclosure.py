"""What a client discloses in a secure round: every record of every message it sends is what the
protocol needs and nothing data-dependent beyond the masked vector — plain, under user-level DP
and under record-level DP; the round's loss and examples reach the server as sums only."""
from __future__ import annotations

import pytest
from flwr.app import RecordDict

from fedembed import compose, metrics
from fedembed.federation import wire
from fedembed.run import federate
from fedembed.secagg import messages as msg
from inprocess_grid import InProcessGrid

# Message type → {record name: the keys it may hold}; every record kind (arrays, metrics, configs).
CONFIGS = {
    "query": {wire.NODE: {"partition_id", "num_partitions"}},       # the partition discovery: public ids
    msg.KEYS: {msg.SECAGG: {"c_pk"}},
    msg.SHARE: {msg.SECAGG: {"s_pk", "to", "boxes", "b_commit"}},
    msg.MASK: {},
    msg.UNMASK: {msg.SECAGG: {"b_from", "b_shares", "s_from", "s_shares"},
                 msg.NEXT: {"s_pk", "to", "boxes", "b_commit", msg.NEXT_ERROR}},
}
ARRAYS = {msg.MASK: {msg.MASKED: {msg.MASKED}}}

PLAIN = {"federation": {"rounds": 2}}
USER_DP = {"privacy": {"user_level": True, "noise_multiplier": 1.0, "clip": 1.0, "adaptive_clip": True,
                       "clip_count_stddev": 2.0},
           "federation": {"rounds": 2, "row_weight": "presence"}}
RECORD_DP = {"privacy": {"record": {"enabled": True, "target_epsilon": 8.0, "expected_batch": 64, "delta": 1e-5}},
             "federation": {"rounds": 2}}


def disclosed(content: RecordDict) -> dict[str, dict[str, set[str]]]:
    """Every record of a reply, by kind: {kind: {record name: its keys}}."""
    return {"arrays": {k: set(r.keys()) for k, r in content.array_records.items()},
            "metrics": {k: set(r.keys()) for k, r in content.metric_records.items()},
            "configs": {k: set(r.keys()) for k, r in content.config_records.items()}}


def _secure_run(tmp_path, write_scenario, name, sections):
    grid = InProcessGrid(4)
    cfg = compose.load(write_scenario(f"{name}.toml", partition={"num_clients": 4}, secagg={"enabled": True},
                                      **sections))
    federate(grid, cfg, tmp_path / name, progress=False)
    return grid, metrics.read(tmp_path / name)


@pytest.mark.parametrize("name, sections", [("plain", PLAIN), ("user_dp", USER_DP), ("record_dp", RECORD_DP)])
def test_every_record_a_client_sends_in_a_secure_round_is_protocol_only(tmp_path, write_scenario, name, sections):
    grid, rows = _secure_run(tmp_path, write_scenario, name, sections)
    assert all(r["clients_ok"] == 4 for r in rows)
    kinds = {t for t, _ in grid.seen}
    assert {msg.KEYS, msg.SHARE, msg.MASK, msg.UNMASK} <= kinds
    for mtype, content in grid.seen:
        got = disclosed(content)
        assert got["metrics"] == {}, (mtype, got)                       # no metric travels in the clear
        assert set(got["arrays"]) <= set(ARRAYS.get(mtype, {})), (mtype, got)
        for rec, keys in got["arrays"].items():
            assert keys <= ARRAYS[mtype][rec], (mtype, got)
        allowed = CONFIGS[mtype]
        assert set(got["configs"]) <= set(allowed), (mtype, got)       # no record_dp, no other record
        for rec, keys in got["configs"].items():
            assert keys <= allowed[rec], (mtype, rec, keys)
    masked = [c for t, c in grid.seen if t == msg.MASK]
    assert len(masked) == 8 and all(set(c.array_records) == {msg.MASKED} and not c.config_records for c in masked)


def test_the_round_loss_and_examples_arrive_as_exact_sums(tmp_path, write_scenario):
    """Round 1 trains from the same tables with the same seeds on both paths: the secure sums give the
    plain run's mean loss (to the 2^−16 fixed point) and the same examples."""
    _, secure = _secure_run(tmp_path, write_scenario, "secure", PLAIN)
    cfg = compose.load(write_scenario("plain.toml", partition={"num_clients": 4}, **PLAIN))
    federate(InProcessGrid(4), cfg, tmp_path / "plain", progress=False)
    plain = metrics.read(tmp_path / "plain")
    assert secure[0]["examples"] == plain[0]["examples"] > 0
    assert secure[0]["train_loss"] == pytest.approx(plain[0]["train_loss"], abs=4 * 2 ** -16 / plain[0]["examples"])
    assert secure[0]["secagg"]["clipped"] >= 0


def test_under_user_level_dp_the_loss_is_unavailable_and_record_level_states_its_bound(tmp_path, write_scenario):
    _, rows = _secure_run(tmp_path, write_scenario, "user", USER_DP)
    assert [r["train_loss"] for r in rows] == [None, None] and rows[0]["examples"] == 0
    assert "clipped" not in rows[0]["secagg"]
    _, rows = _secure_run(tmp_path, write_scenario, "record", RECORD_DP)
    assert rows[0]["train_loss"] is None
    assert rows[-1]["privacy"]["units"]["record"]["epsilon"] == pytest.approx(8.0)   # the target every client keeps


def test_a_secure_run_with_record_level_dp_is_not_resumed(tmp_path, write_scenario):
    from fedembed.errors import CheckpointError

    _, _ = _secure_run(tmp_path, write_scenario, "record", RECORD_DP)
    cfg = compose.load(write_scenario("again.toml", partition={"num_clients": 4}, secagg={"enabled": True},
                                      **{**RECORD_DP, "federation": {"rounds": 3}}))
    with pytest.raises(CheckpointError, match="accountant on its node only"):
        federate(InProcessGrid(4), cfg, tmp_path / "record", resume=True, progress=False)
