"""Sparse uploads: the rows a client touched, with their indices, expand to the dense update exactly."""
from __future__ import annotations

import numpy as np
import pytest

from fedembed.errors import UpdateError
from fedembed.federation import sparse, wire

SHAPES = {"in_vectors": (200, 16), "out_vectors": (200, 16)}


def _update(seed: int = 0):
    rng = np.random.default_rng(seed)
    tables, weights = {}, {}
    for name, shape in SHAPES.items():
        touched = rng.random(shape[0]) < 0.2
        tables[name] = (rng.standard_normal(shape) * touched[:, None]).astype(np.float32)
        weights[name] = (rng.integers(1, 5, shape[0]) * touched).astype(np.float32)
    tables["in_vectors"][7] = 0.0          # touched but with a zero delta: still sent (its weight counts)
    weights["in_vectors"][7] = 3.0
    return tables, weights


def test_sparse_reply_expands_to_the_dense_reply_bit_for_bit_and_is_smaller():
    tables, weights = _update()
    dense = wire.reply_content(tables, weights, {"loss": 1.0})
    packed = wire.reply_content(tables, weights, {"loss": 1.0}, sparse=True)
    t, w, m = wire.parse_reply(packed, SHAPES)
    for name in SHAPES:
        np.testing.assert_array_equal(t[name], tables[name])
        np.testing.assert_array_equal(w[name], weights[name])
        assert t[name].dtype == np.float32
    assert m == {"loss": 1.0}
    assert 7 in packed.array_records[wire.ROWS]["in_vectors"].numpy()
    assert wire.nbytes(packed) < wire.nbytes(dense) / 2


def test_sparse_upload_is_the_plain_path_only():
    assert wire.sparse_upload({"federation": {"sparse_upload": True}})
    assert not wire.sparse_upload({"federation": {"sparse_upload": True}, "secagg": {"enabled": True}})
    assert not wire.sparse_upload({"federation": {"sparse_upload": False}})


def _packed():
    return sparse.pack(*_update())


@pytest.mark.parametrize("corrupt, msg", [
    (lambda v, w, r: r.__setitem__("in_vectors", r["in_vectors"] + 1000), "out of range"),
    (lambda v, w, r: r.__setitem__("in_vectors", -r["in_vectors"] - 1), "out of range"),
    (lambda v, w, r: r["in_vectors"].__setitem__(1, r["in_vectors"][0]), "duplicate"),
    (lambda v, w, r: r.__setitem__("in_vectors", r["in_vectors"].astype(np.float64)), "integer"),
    (lambda v, w, r: v.__setitem__("in_vectors", v["in_vectors"][:, :15]), "shape"),
    (lambda v, w, r: v.__setitem__("in_vectors", v["in_vectors"][:-1]), "shape"),
    (lambda v, w, r: w.__setitem__("out_vectors", w["out_vectors"][:-1]), "weights of 'out_vectors'"),
    (lambda v, w, r: v["out_vectors"].__setitem__((0, 0), np.nan), "NaN"),
    (lambda v, w, r: r.pop("out_vectors"), "rows for"),
    (lambda v, w, r: v.__setitem__("in_vectors", v["in_vectors"].astype(np.int32)), "floating"),
])
def test_malformed_sparse_replies_are_refused_with_the_problem_named(corrupt, msg):
    values, weights, rows = _packed()
    corrupt(values, weights, rows)
    with pytest.raises(UpdateError, match=msg):
        sparse.unpack(values, weights, rows, SHAPES)


def test_a_sparse_reply_needs_the_expected_shapes():
    content = wire.reply_content(*_update(), {}, sparse=True)
    with pytest.raises(UpdateError, match="shapes"):
        wire.parse_reply(content)


def test_rows_added_in_place_give_the_dense_sums_bit_for_bit():
    from fedembed.aggregate.accumulate import Accumulator

    dense, in_place = Accumulator(SHAPES), Accumulator(SHAPES)
    for seed in range(5):
        tables, weights = _update(seed)
        dense.add(tables, weights)
        got = wire.parse_sparse_reply(wire.reply_content(tables, weights, {"loss": 2.0}, sparse=True), SHAPES)
        assert got is not None and got[3] == {"loss": 2.0}
        in_place.add_rows(got[0], got[1], got[2])
    assert in_place.count == dense.count == 5
    for name in SHAPES:
        np.testing.assert_array_equal(in_place.sums[name], dense.sums[name])
        np.testing.assert_array_equal(in_place.weights[name], dense.weights[name])
    assert wire.parse_sparse_reply(wire.reply_content(*_update(), {}), SHAPES) is None   # dense: not for this path


@pytest.mark.parametrize("corrupt, msg", [
    (lambda v, w, r: r.__setitem__("in_vectors", r["in_vectors"] + 1000), "out of range"),
    (lambda v, w, r: v["out_vectors"].__setitem__((0, 0), np.inf), "NaN or Inf"),
    (lambda v, w, r: w["in_vectors"].__setitem__(0, -1.0), "negative"),
    (lambda v, w, r: w["in_vectors"].__setitem__(0, np.nan), "NaN"),
])
def test_rows_added_in_place_are_checked_first_and_leave_the_sums_untouched(corrupt, msg):
    from flwr.app import RecordDict

    from fedembed.aggregate.accumulate import Accumulator

    acc = Accumulator(SHAPES)
    values, weights, rows = _packed()
    corrupt(values, weights, rows)
    with pytest.raises(UpdateError, match=msg):
        content = RecordDict({wire.UPDATE: wire.arrays(values), wire.WEIGHTS: wire.arrays(weights),
                                   wire.ROWS: wire.arrays(rows)})
        acc.add_rows(*wire.parse_sparse_reply(content, SHAPES)[:3])
    assert acc.count == 0 and all(not s.any() for s in acc.sums.values())
