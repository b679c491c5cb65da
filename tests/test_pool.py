"""A pool of Flower nodes hosting many clients (`simulation.nodes`, fedembed/federation/pool.py)."""
from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedembed import compose
from fedembed import checkpoint, metrics
from fedembed.run import federate
from fedembed.errors import ConfigError, UpdateError
from fedembed.federation import pool, pool_params, wire
from inprocess_grid import InProcessGrid

pytestmark = pytest.mark.usefixtures("task_identity", "one_torch_thread")


def _run(tmp_path, write_scenario, name: str, nodes: int, **sections):
    fed = {"rounds": 2, "clients_per_round": 4, **sections.pop("federation", {})}
    cfg = compose.load(write_scenario(f"{name}.toml", partition={"name": "iid", "num_clients": 5},
                                         federation=fed, simulation={"nodes": nodes}, **sections))
    grid = InProcessGrid(nodes or cfg.partition.num_clients, per_pull=5)
    federate(grid, cfg, tmp_path / name, progress=False)
    return checkpoint.load(tmp_path / name), metrics.read(tmp_path / name), grid


def test_a_pool_of_two_nodes_trains_the_same_clients_to_the_same_tables(tmp_path, write_scenario):
    one, one_rows, _ = _run(tmp_path, write_scenario, "per_client", 0)
    two, two_rows, grid = _run(tmp_path, write_scenario, "pooled", 2)
    for table in one.tables:  # the same updates, summed in another order
        np.testing.assert_allclose(two.tables[table], one.tables[table], rtol=0, atol=1e-6)
    for a, b in zip(one_rows, two_rows):
        assert a["clients"] == b["clients"] == 4 and a["clients_ok"] == b["clients_ok"] == 4
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-9)
        assert a["bytes_up"] == b["bytes_up"]                      # every client's update still travels
        assert b["bytes_down"] * 2 == a["bytes_down"]              # but one download per node, not per client
    assert set(grid.contexts) == {0, 1}


def test_record_level_accountants_stay_per_client_on_a_pool_node(tmp_path, write_scenario):
    rec = {"record": {"enabled": True, "noise_multiplier": 1.0, "expected_batch": 64, "delta": 1e-5}}
    fed = {"rounds": 3, "clients_per_round": 2}
    _, one_rows, _ = _run(tmp_path, write_scenario, "per_client", 0, privacy=rec, federation=fed)
    _, two_rows, grid = _run(tmp_path, write_scenario, "pooled", 2, privacy=rec, federation=fed)
    eps = [[r["privacy"]["units"]["record"]["epsilon"] for r in rows] for rows in (one_rows, two_rows)]
    assert eps[0][2] > eps[0][0] > 0 and eps[1] == pytest.approx(eps[0], rel=1e-9)
    # Each node's state holds one accountant per client it trained, under that client's key.
    kept = {k for ctx in grid.contexts.values() for k in ctx.state.config_records}
    trained = {p for p in range(5) if any(k == f"{wire.RECORD_DP}.{p}" for k in kept)}
    assert trained and all(f"{wire.RECORD_DP}.{p}" in grid.contexts[p % 2].state.config_records for p in trained)


def test_a_dropout_fails_one_client_of_the_pool_not_the_node(tmp_path, write_scenario):
    beh = {"dropout": 0.4}
    _, one_rows, _ = _run(tmp_path, write_scenario, "per_client", 0, behaviour=beh)
    _, two_rows, _ = _run(tmp_path, write_scenario, "pooled", 2, behaviour=beh)
    assert [r["dropped"] for r in two_rows] == [r["dropped"] for r in one_rows]
    assert [r["clients_ok"] for r in two_rows] == [r["clients_ok"] for r in one_rows]
    assert sum(r["dropped"] for r in one_rows) > 0


def _reply(p: int) -> RecordDict:
    return wire.reply_content({"in": np.full((2, 3), p, np.float32)}, {"in": np.ones(2, np.float32)},
                              {"loss": float(p)}, {"acct": p})


def test_pool_messages_round_trip():
    base = RecordDict({wire.TRAIN: ConfigRecord({"round": 1})})
    msg = pool.train_content(base, [4, 9], {9: {"acct": 9}})
    assert pool.partitions(msg) == [4, 9] and pool.partitions(base) is None
    assert wire.parse_record_dp(pool.state_of(msg, 9)) == {"acct": 9}
    assert wire.parse_record_dp(pool.state_of(msg, 4)) is None
    assert wire.TRAIN in msg and pool.POOL not in base          # the shared content is not modified

    replies, errors = pool.split_reply(pool.reply_content({4: _reply(4), 9: _reply(9)}, {7: "dropped out"}),
                                       [4, 7, 9])
    assert errors == {7: "dropped out"} and sorted(replies) == [4, 9]
    tables, weights, m = wire.parse_reply(replies[9])
    assert tables["in"][0, 0] == 9 and m == {"loss": 9.0} and wire.parse_record_dp(replies[9]) == {"acct": 9}


@pytest.mark.parametrize("tamper, message", [
    (lambda r: r.__delitem__(pool.POOL), "no 'pool' record"),
    (lambda r: r.__setitem__(pool.POOL, ConfigRecord({"answered": [4, 5], "failed": [], "reasons": []})),
     "does not match the partitions asked"),
    (lambda r: r.__setitem__(pool.POOL, ConfigRecord({"answered": [4, 4], "failed": [], "reasons": []})),
     "does not match the partitions asked"),
    (lambda r: r.__setitem__("12.update", ArrayRecord({"in": Array(np.zeros(1))})), "record '12.update' of no"),
    (lambda r: r.__setitem__("extra", ArrayRecord({"in": Array(np.zeros(1))})), "record 'extra' of no"),
])
def test_a_pooled_reply_that_does_not_match_the_request_is_refused(tamper, message):
    content = pool.reply_content({4: _reply(4)}, {})
    tamper(content)
    with pytest.raises(UpdateError, match=message):
        pool.split_reply(content, [4, 7])


def test_pool_settings_are_checked():
    with pytest.raises(ConfigError, match=r"simulation.nodes \(4\) exceeds partition.num_clients \(3\)"):
        compose.load(None, {"partition.num_clients": 3, "simulation.nodes": 4, "secagg.enabled": False})
    assert compose.load(None, {"partition.num_clients": 3, "simulation.nodes": 2, "secagg.enabled": True})  # pool_batch
    with pytest.raises(ConfigError, match="simulation.nodes must be >= 0"):
        compose.load(None, {"simulation.nodes": -1, "secagg.enabled": False})
    cfg = compose.load(None, {"partition.num_clients": 10, "simulation.nodes": 3, "secagg.enabled": False})
    assert pool_params.num_nodes(cfg) == 3 and pool.hosts(10, {0: 50, 1: 51, 2: 52})[7] == 51


def test_a_pool_node_reporting_the_wrong_pool_size_stops_the_run(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(partition={"num_clients": 5}, simulation={"nodes": 2}))
    with pytest.raises(Exception, match="reports 3 partitions, the scenario has simulation.nodes=2"):
        federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_flower_simulation_runs_five_clients_on_two_nodes(tmp_path, write_scenario):
    import fedembed

    out = tmp_path / "run"
    report = fedembed.simulate(write_scenario(partition={"num_clients": 5}, simulation={"nodes": 2},
                                              federation={"rounds": 2, "clients_per_round": 5}), out, progress=False)
    rows = metrics.read(out)
    assert [r["clients_ok"] for r in rows] == [5, 5] and all(r["failed"] == 0 for r in rows)
    tables = sum(t.nbytes for t in checkpoint.load(out).tables.values())
    assert 2 * tables <= rows[0]["bytes_down"] < 3 * tables      # two nodes' downloads, not five clients'
    assert report["run"]["rounds"] == 2
