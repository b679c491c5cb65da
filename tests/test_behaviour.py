"""Simulated client behaviour: dropouts and stragglers, seeded, counted in metrics.jsonl.

The server loop runs on a threaded in-process grid that calls client/app.py's train handler
(so a dropout is the real error reply) and honours the round deadline the way Flower's grid
does (replies after the timeout are not returned). One real Ray run is behind `slow`.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from flwr.app import Message, RecordDict

from fedembed import compose
from fedembed import metrics
from fedembed.run import federate
from fedembed.errors import ConfigError
from fedembed.federation import behaviour, wire
from inprocess_grid import InProcessGrid

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _message(content: RecordDict, node: int = 100) -> Message:
    return Message(content=content, dst_node_id=node, message_type="train")


def test_dropout_draws_are_seeded_per_round_and_partition():
    cfg = compose.load(None, {"behaviour.dropout": 0.3, "seed": 4})
    a = [[behaviour.drops(cfg, r, p) for p in range(50)] for r in range(1, 6)]
    assert a == [[behaviour.drops(cfg, r, p) for p in range(50)] for r in range(1, 6)]  # reproducible
    rate = np.mean(a)
    assert 0.15 < rate < 0.45
    assert a[0] != a[1]                                  # a new draw each round
    other = compose.load(None, {"behaviour.dropout": 0.3, "seed": 5})
    assert a != [[behaviour.drops(other, r, p) for p in range(50)] for r in range(1, 6)]
    # stages of one round are independent draws (secure aggregation's stages use their own)
    assert [behaviour.drops(cfg, 1, p, "train") for p in range(50)] != \
        [behaviour.drops(cfg, 1, p, "unmask") for p in range(50)]
    none = compose.load(None)
    assert not any(behaviour.drops(none, 1, p) for p in range(50))
    assert behaviour.delay(none, 1, 0) == 0.0


@pytest.mark.parametrize("key, value, msg", [
    ("behaviour.dropout", 1.0, "behaviour.dropout must be below 1"),
    ("behaviour.dropout", -0.1, "behaviour.dropout must be"),
    ("behaviour.straggler_fraction", 1.5, "behaviour.straggler_fraction must be in"),
    ("behaviour.straggler_delay", float("nan"), "behaviour.straggler_delay must be"),
])
def test_bad_behaviour_refused_naming_the_key(key, value, msg):
    with pytest.raises(ConfigError, match=msg):
        compose.load(None, {key: value})


def test_stragglers_need_a_delay():
    with pytest.raises(ConfigError, match="behaviour.straggler_delay"):
        compose.load(None, {"behaviour.straggler_fraction": 0.5})
    with pytest.raises(ConfigError, match="unknown key: behaviour.dropuot"):
        compose.load(None, {"behaviour.dropuot": 0.5})


def test_dropped_client_replies_with_a_clear_error(write_scenario):
    cfg = compose.load(write_scenario(behaviour={"dropout": 0.5}), {"seed": 3})
    grid = InProcessGrid(3, workers=8)
    rnd, pid = next((r, p) for r in range(1, 50) for p in range(3) if behaviour.drops(cfg, r, p))
    tables = {"in_vectors": np.zeros((5, 2), np.float32), "out_vectors": np.zeros((5, 2), np.float32)}
    ins = wire.TrainInstruction(rnd, 0.1, 0.1, cfg.seed, cfg.to_dict(), "/nonexistent")
    content = wire.train_content(wire.arrays(tables), wire.arrays({"counts": np.ones(5)}), ins)
    reply = grid.app(_message(content, 100 + pid), grid.contexts[pid])  # no shard is read: it drops first
    assert reply.has_error() and reply.error.code == behaviour.ERROR_CODE
    assert behaviour.DROPPED in reply.error.reason and f"round {rnd}" in reply.error.reason


def test_dropouts_and_stragglers_are_counted_per_round(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(
        partition={"num_clients": 6}, federation={"rounds": 2, "round_timeout": 6.0},
        behaviour={"dropout": 0.25, "straggler_fraction": 0.3, "straggler_delay": 9.0}), {"seed": 1})
    rows = _run(cfg, tmp_path / "run")
    assert [r["round"] for r in rows] == [1, 2]
    for r in rows:
        drop = [p for p in range(6) if behaviour.drops(cfg, r["round"], p)]
        slow = [p for p in range(6) if p not in drop and behaviour.delay(cfg, r["round"], p) > 0]
        assert r["dropped"] == len(drop) and r["stragglers"] == len(slow)
        assert r["timed_out"] == len(slow)               # 9 s of delay misses the 6 s deadline
        assert r["clients_ok"] == 6 - len(drop) - len(slow)
        assert r["failed"] == len(drop) + len(slow)
    assert sum(r["dropped"] for r in rows) > 0 and sum(r["stragglers"] for r in rows) > 0


def test_a_straggler_within_the_deadline_is_aggregated(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(
        federation={"rounds": 1, "round_timeout": 60.0},
        behaviour={"straggler_fraction": 1.0, "straggler_delay": 0.5}))
    t0 = time.perf_counter()
    (r,) = _run(cfg, tmp_path / "run")
    assert time.perf_counter() - t0 >= 0.5
    assert r["stragglers"] == 3 and r["timed_out"] == 0 and r["clients_ok"] == 3 and r["dropped"] == 0


def _run(cfg, out):
    grid = InProcessGrid(cfg.partition.num_clients, workers=8)
    try:
        federate(grid, cfg, out, progress=False)
    finally:
        grid.close()
    return metrics.read(out)


@pytest.mark.slow
def test_dropouts_in_a_real_simulation(tmp_path, write_scenario):
    import fedembed

    scenario = write_scenario(partition={"num_clients": 4}, federation={"rounds": 3},
                              behaviour={"dropout": 0.3})
    cfg = compose.load(scenario)
    fedembed.simulate(scenario, tmp_path / "run", progress=False)
    rows = metrics.read(tmp_path / "run")
    expected = [sum(behaviour.drops(cfg, r, p) for p in range(4)) for r in (1, 2, 3)]
    assert [r["dropped"] for r in rows] == expected and sum(expected) > 0
    assert [r["clients_ok"] for r in rows] == [4 - e for e in expected]
