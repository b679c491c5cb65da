"""Aggregation rules, update validation, and the server's round loop on an in-process grid."""
from __future__ import annotations

import numpy as np
import pytest

from fedembed import aggregate, compose, metrics
from fedembed.aggregate import divide_rows
from fedembed.aggregate.accumulate import Accumulator
from fedembed.errors import FedembedError, UpdateError
from fedembed.federation import server
from fedembed.run import federate
from fedembed.updates import delta, weight_rows
from inprocess_grid import InProcessGrid, tamper_update


def _cfg(**over):
    return compose.load(None, over)


def test_rowwise_gives_a_rare_row_its_whole_update_fedavg_dilutes_it():
    v = 4
    g = {"t": np.zeros((v, 2), dtype=np.float32)}
    # client 0 saw rows 0 and 1 (row 1 is rare: only client 0); client 1 saw row 0 only
    locals_ = [{"t": np.array([[1, 1], [2, 2], [0, 0], [0, 0]], dtype=np.float32)},
               {"t": np.array([[3, 3], [0, 0], [0, 0], [0, 0]], dtype=np.float32)}]
    counts = [{"t": np.array([1, 5, 0, 0.])}, {"t": np.array([3, 0, 0, 0.])}]
    results = {}
    for rule_name in ("rowwise", "fedavg"):
        rule = aggregate.make(_cfg(**{"federation.aggregate": rule_name}))
        acc = Accumulator({"t": (v, 2)})
        for loc, cnt, n in zip(locals_, counts, (6, 3)):
            u = weight_rows(delta(loc, g, rule.client_weights(cnt, n)))
            acc.add(u.tables, u.weights)
        results[rule_name] = divide_rows(acc.sums, acc.weights)["t"]
    rw, fa = results["rowwise"], results["fedavg"]
    np.testing.assert_allclose(rw[1], [2, 2])                  # the only client that saw it decides
    np.testing.assert_allclose(rw[0], [(1 * 1 + 3 * 3) / 4] * 2)  # count-weighted mean
    np.testing.assert_allclose(rw[2:], 0)                      # untouched rows stay put
    np.testing.assert_allclose(fa[1], [2 * 6 / 9] * 2)         # diluted by the client that never saw it
    np.testing.assert_allclose(fa[0], [(1 * 6 + 3 * 3) / 9] * 2)


def test_presence_weights_are_indicators():
    rule = aggregate.make(_cfg(**{"federation.row_weight": "presence"}))
    w = rule.client_weights({"t": np.array([0.0, 3.0, 1.0])}, 4)
    assert w["t"].tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("bad, msg", [
    ({"t": np.full((3, 2), np.nan, dtype=np.float32)}, "NaN"),
    ({"t": np.zeros((4, 2), dtype=np.float32)}, "shape"),
    ({"u": np.zeros((3, 2), dtype=np.float32)}, "tables"),
    ({"t": np.zeros((3, 2), dtype=np.int64)}, "floating"),
])
def test_accumulator_refuses_bad_updates_and_keeps_its_sums(bad, msg):
    acc = Accumulator({"t": (3, 2)})
    acc.add({"t": np.ones((3, 2), dtype=np.float32)}, {"t": np.ones(3, dtype=np.float32)})
    with pytest.raises(UpdateError, match=msg):
        acc.add(bad, {"t": np.ones(3, dtype=np.float32)})
    with pytest.raises(UpdateError, match="negative"):
        acc.add({"t": np.ones((3, 2), dtype=np.float32)}, {"t": -np.ones(3, dtype=np.float32)})
    assert acc.count == 1 and acc.sums["t"].sum() == 6


# ---- the server loop on an in-process grid (no Ray): what happens to bad or failing clients

def _nan(tables, weights):
    tables["in_vectors"][0, 0] = np.nan
    return tables, weights


def _reshape(tables, weights):
    tables["out_vectors"] = tables["out_vectors"][:-1]
    return tables, weights


def test_server_rejects_nan_and_misshaped_updates_and_goes_on(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(federation={"rounds": 2}))
    grid = InProcessGrid(3, tamper={1: tamper_update(_nan), 2: tamper_update(_reshape)})
    report = federate(grid, cfg, tmp_path / "run", progress=False)
    rows = metrics.read(tmp_path / "run")
    assert [r["round"] for r in rows] == [1, 2]
    assert all(r["rejected"] == 2 and r["clients_ok"] == 1 for r in rows)
    assert report["quality"]["wordsim353"]["oov"] < 1.0


def test_server_counts_failed_clients_and_stops_when_none_succeed(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(federation={"rounds": 1}))
    federate(InProcessGrid(3, fail={0}), cfg, tmp_path / "a", progress=False)
    assert metrics.read(tmp_path / "a")[0]["failed"] == 1
    with pytest.raises(FedembedError, match="no client update could be aggregated.*crashed"):
        federate(InProcessGrid(3, fail={0, 1, 2}), cfg, tmp_path / "b", progress=False)


def test_server_refuses_a_federation_of_the_wrong_size(tmp_path, write_scenario):
    cfg = compose.load(write_scenario())
    with pytest.raises(FedembedError, match="partition.num_clients=3"):
        server.discover_partitions(InProcessGrid(4), expected=3, wait_s=1)
    with pytest.raises(FedembedError, match="only 2 of 3"):
        server.discover_partitions(InProcessGrid(2), expected=3, wait_s=1)
    assert cfg.partition.num_clients == 3


def test_server_refuses_oversized_updates(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(federation={"rounds": 1, "max_update_mb": 0.001}))
    with pytest.raises(FedembedError, match="exceeds federation.max_update_mb"):
        federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)


def test_lr_schedule_decays_linearly_across_rounds():
    cfg = _cfg(**{"federation.rounds": 4, "train.lr": 0.04, "train.min_lr": 0.0})
    spans = [server.learning_rates(cfg, r) for r in range(1, 5)]
    assert spans[0] == pytest.approx((0.04, 0.03)) and spans[-1] == pytest.approx((0.01, 0.0))
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(spans, spans[1:]))


def test_count_weights_are_capped_per_row_unless_the_cap_is_zero():
    counts = {"t": np.array([0, 1, 3, 10, 400])}
    capped = aggregate.make(compose.load(None, {"federation.max_row_weight": 3})).client_weights(counts, 7)
    assert capped["t"].tolist() == [0, 1, 3, 3, 3]
    default = aggregate.make(compose.load(None)).client_weights(counts, 7)
    assert default["t"].tolist() == [0, 1, 3, 10, 255]
    uncapped = aggregate.make(compose.load(None, {"federation.max_row_weight": 0})).client_weights(counts, 7)
    assert uncapped["t"].tolist() == [0, 1, 3, 10, 400]
