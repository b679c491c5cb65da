"""Robust aggregation rules against independent numpy computations, their properties, and the
combinations the configuration refuses."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from fedembed import compose
from fedembed import aggregate
from fedembed.run import federate
from fedembed.aggregate import divide_rows
from fedembed.aggregate.krum import krum_scores
from fedembed.aggregate.norm_bound import ClipDeltas
from fedembed.errors import ConfigError
from fedembed.updates import ClientUpdate
from inprocess_grid import InProcessGrid


def _cfg(**over):
    """The built-in default with plain aggregation (robust rules need each client's values)."""
    return compose.load(None, {"secagg.enabled": False, **over})


def _aggregate(rule: str, deltas: list[np.ndarray], touched: list[np.ndarray] | None = None, **over):
    """Run `rule` on per-client deltas [V, D] as the server does: weights, collector, divide_rows."""
    cfg = _cfg(**{"federation.aggregate": rule, **over})
    r = aggregate.make(cfg)
    v, d = deltas[0].shape
    acc = aggregate.make(cfg).collector({"t": (v, d)})
    for i, delta in enumerate(deltas):
        t = touched[i] if touched is not None else np.ones(v, dtype=bool)
        w = r.client_weights({"t": t.astype(np.float64)}, 1)["t"]
        acc.add({"t": (np.where(t[:, None], delta, 0) * w[:, None]).astype(np.float32)}, {"t": w})
    return divide_rows(acc.sums, acc.weights)["t"], acc


def _random_case(seed: int, n: int = 7, v: int = 9, d: int = 5):
    rng = np.random.default_rng(seed)
    deltas = [rng.normal(size=(v, d)).astype(np.float32) for _ in range(n)]
    touched = [rng.random(v) < 0.7 for _ in range(n)]
    touched[0][:] = True
    touched[1][-1] = touched[0][-1] = False  # the last row: somebody else, or nobody
    for t in touched[2:]:
        t[-1] = False
    return deltas, touched


def _holders(deltas, touched, row):
    return np.array([d[row] for d, t in zip(deltas, touched) if t[row]], dtype=np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_and_trimmed_mean_match_numpy_row_by_row(seed):
    deltas, touched = _random_case(seed)
    med, _ = _aggregate("median", deltas, touched)
    trim, _ = _aggregate("trimmed_mean", deltas, touched, **{"robust.trim_fraction": 0.2})
    for row in range(deltas[0].shape[0]):
        x = _holders(deltas, touched, row)
        if len(x) == 0:  # nobody touched it: unchanged
            assert not med[row].any() and not trim[row].any()
            continue
        np.testing.assert_allclose(med[row], np.median(x, axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(trim[row], stats.trim_mean(x, 0.2, axis=0), rtol=1e-5, atol=1e-6)


def _naive_krum(x: np.ndarray, f: int, m: int) -> np.ndarray:
    n = len(x)
    if n == 1:
        return x[0]
    k = max(1, n - f - 2)
    scores = []
    for i in range(n):
        dist = sorted(float(np.sum((x[i] - x[j]) ** 2)) for j in range(n) if j != i)
        scores.append(sum(dist[:k]))
    order = np.argsort(scores, kind="stable")[:min(m, n)]
    return x[order].mean(axis=0)


@pytest.mark.parametrize("seed", [0, 3])
def test_krum_and_multi_krum_match_a_naive_implementation(seed):
    deltas, touched = _random_case(seed)
    krum, _ = _aggregate("krum", deltas, touched, **{"robust.byzantine": 1})
    multi, _ = _aggregate("multi_krum", deltas, touched, **{"robust.byzantine": 1, "robust.selected": 3})
    for row in range(deltas[0].shape[0]):
        x = _holders(deltas, touched, row)
        if len(x) == 0:
            assert not krum[row].any()
            continue
        np.testing.assert_allclose(krum[row], _naive_krum(x, 1, 1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(multi[row], _naive_krum(x, 1, 3), rtol=1e-5, atol=1e-6)


_rows = arrays(np.float32, st.tuples(st.integers(3, 9), st.integers(1, 4), st.integers(1, 3)),
               elements=st.floats(-10, 10, width=32))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows)
def test_median_and_trimmed_mean_stay_within_each_coordinates_range(x):
    deltas = list(x)
    lo, hi = x.min(axis=0), x.max(axis=0)
    for rule in ("median", "trimmed_mean"):
        out, _ = _aggregate(rule, deltas, **{"robust.trim_fraction": 0.25})
        assert np.all(out >= lo - 1e-5) and np.all(out <= hi + 1e-5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows, st.floats(1e3, 1e30), st.data())
def test_a_minority_of_huge_updates_cannot_drag_the_median_outside_the_honest_range(x, size, data):
    honest = list(x)
    bad = data.draw(st.integers(1, (len(honest) - 1) // 2))  # strictly fewer than the honest ones
    sign = data.draw(st.sampled_from([-1.0, 1.0]))
    evil = [np.full_like(honest[0], sign * size) for _ in range(bad)]
    out, _ = _aggregate("median", honest + evil)
    assert np.all(out >= x.min(axis=0) - 1e-5) and np.all(out <= x.max(axis=0) + 1e-5)
    trim, _ = _aggregate("trimmed_mean", honest + evil, **{"robust.trim_fraction": 0.49})
    assert np.all(np.abs(trim) <= np.abs(x).max() + 1e-4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(5, 12), st.integers(0, 10_000), st.floats(5.0, 1e6))
def test_krum_picks_an_honest_update_when_f_is_below_n_over_2_minus_1(n, seed, offset):
    f = (n - 3) // 2                  # the largest f with n > 2f + 2
    rng = np.random.default_rng(seed)
    honest = [rng.normal(0, 1, (2, 6)).astype(np.float32) for _ in range(n - f)]
    evil = [(rng.normal(0, 1, (2, 6)) + offset).astype(np.float32) for _ in range(f)]
    out, _ = _aggregate("krum", honest + evil, **{"robust.byzantine": f, "partition.num_clients": n})
    for row in range(2):
        assert any(np.allclose(out[row], h[row], atol=1e-5) for h in honest)


def test_identical_sybils_win_krum_once_they_fill_its_neighbourhood():
    """n − f − 2 neighbours: enough identical copies score 0 however far they are (why Krum is no Sybil defence)."""
    rng = np.random.default_rng(0)
    n, f = 10, 1
    honest = [rng.normal(0, 1, (1, 4)) for _ in range(3)]
    sybil = np.full((1, 4), 50.0)
    x = np.stack(honest + [sybil] * (n - 3)).astype(np.float32)  # 7 copies ≥ n − f − 2 + 1
    scores = krum_scores(x, np.ones((n, 1), dtype=bool), f)
    assert int(np.argmin(scores[:, 0])) >= 3


def test_rows_nobody_touched_stay_unchanged_and_a_lone_holder_decides_its_row():
    deltas = [np.ones((3, 2), np.float32), 2 * np.ones((3, 2), np.float32)]
    touched = [np.array([True, True, False]), np.array([True, False, False])]
    for rule in ("median", "trimmed_mean", "krum", "multi_krum", "norm_bound"):
        out, acc = _aggregate(rule, deltas, touched, **{"robust.norm_bound": 100.0})
        assert acc.count == 2
        assert not out[2].any(), rule
        np.testing.assert_allclose(out[1], 1.0, err_msg=rule)


def test_robust_rules_ignore_claimed_weights():
    """A claimed count of 10⁶ takes a row of the weighted mean over; robust rules see only presence."""
    cfg = _cfg(**{"federation.aggregate": "median"})
    acc = aggregate.make(cfg).collector({"t": (1, 1)})
    for value, w in ((1.0, 1.0), (1.2, 1.0), (1000.0, 1e6)):
        acc.add({"t": np.array([[value * w]], np.float32)}, {"t": np.array([w], np.float32)})
    assert divide_rows(acc.sums, acc.weights)["t"][0, 0] == pytest.approx(1.2)


def test_norm_bound_clips_each_update_on_client_and_server():
    big = ClientUpdate({"a": np.full((2, 2), 3.0, np.float32), "b": np.full((1, 2), 4.0, np.float32)},
                       {"a": np.ones(2, np.float32), "b": np.ones(1, np.float32)})
    clipped = ClipDeltas(2.0, 0.0)(big)
    norm = np.sqrt(sum(float((t.astype(np.float64) ** 2).sum()) for t in clipped.tables.values()))
    assert norm <= 2.0 and norm == pytest.approx(2.0, rel=1e-5)
    # server side: an attacker that skipped the client stage is clipped all the same
    out, _ = _aggregate("norm_bound", [np.full((2, 3), 100.0, np.float32), np.full((2, 3), 0.1, np.float32)],
                        **{"robust.norm_bound": 1.0})
    attacker_share = 1.0 / np.sqrt(6)   # its clipped value per coordinate
    np.testing.assert_allclose(out, (attacker_share + 0.1) / 2, rtol=1e-4)


def test_row_bound_caps_a_single_poisoned_row_that_the_update_bound_misses():
    honest = np.full((50, 2), 0.1, np.float32)          # update norm 1.0, rows of norm 0.14
    attacker = honest.copy()
    attacker[0] = [3.0, 4.0]                            # one row of norm 5: update norm ≈ 5.1
    loose, _ = _aggregate("norm_bound", [honest, honest, attacker], **{"robust.norm_bound": 6.0})
    tight, _ = _aggregate("norm_bound", [honest, honest, attacker],
                          **{"robust.norm_bound": 6.0, "robust.row_bound": 0.5})
    assert np.linalg.norm(loose[0]) > 1.5               # the update bound lets the row through
    assert np.linalg.norm(tight[0]) <= (0.5 + 2 * np.hypot(0.1, 0.1)) / 3 + 1e-6
    clipped = ClipDeltas(6.0, 0.5)(ClientUpdate({"t": attacker.copy()}, {"t": np.ones(50, np.float32)}))
    assert np.linalg.norm(clipped.tables["t"][0]) == pytest.approx(0.5, rel=1e-5)


def test_norm_bound_zero_clips_to_the_rounds_median_norm():
    ones = np.ones((4, 1), np.float32)                  # norms 2, 4, 6 and 200: median 5
    ups = [ones, 2 * ones, 3 * ones, 100 * ones]
    out, _ = _aggregate("norm_bound", ups)
    expect = (1 + 2 + 2.5 + 2.5) / 4                    # the 6 and the 200 scaled to norm 5 (2.5 per coordinate)
    np.testing.assert_allclose(out, expect, rtol=1e-5)


def test_each_rule_declares_whether_it_composes_with_secure_aggregation():
    from fedembed.aggregate.robust import report

    expect = {"rowwise": True, "fedavg": True, "norm_bound": True, "median": False, "trimmed_mean": False,
              "krum": False, "multi_krum": False}
    for rule, ok in expect.items():
        r = report(_cfg(**{"federation.aggregate": rule, "robust.norm_bound": 5.0}))
        assert r["rule"] == rule and r["composes_with_secagg"] is ok and r["reason"]
    adaptive = report(_cfg(**{"federation.aggregate": "norm_bound"}))  # C = 0: the round's median norm
    assert adaptive["composes_with_secagg"] is False and "median" in adaptive["reason"]


@pytest.mark.parametrize("rule", ["median", "trimmed_mean", "krum", "multi_krum"])
def test_rules_that_need_each_update_are_refused_with_secure_aggregation(rule):
    with pytest.raises(ConfigError, match=f"federation.aggregate = '{rule}' cannot run with secagg.enabled"):
        _cfg(**{"federation.aggregate": rule, "secagg.enabled": True})


def test_norm_bound_is_accepted_with_secure_aggregation_and_other_refusals():
    assert _cfg(**{"federation.aggregate": "norm_bound", "robust.norm_bound": 5.0, "secagg.enabled": True}).secagg.enabled
    with pytest.raises(ConfigError, match="robust.norm_bound = 0 clips to the median"):
        _cfg(**{"federation.aggregate": "norm_bound", "secagg.enabled": True})
    with pytest.raises(ConfigError, match="privacy.user_level"):
        _cfg(**{"federation.aggregate": "median", "privacy.user_level": True,
                "federation.row_weight": "presence"})
    with pytest.raises(ConfigError, match="robust.trim_fraction"):
        _cfg(**{"federation.aggregate": "trimmed_mean", "robust.trim_fraction": 0.5})
    with pytest.raises(ConfigError, match="n > 2f"):
        _cfg(**{"federation.aggregate": "krum", "robust.byzantine": 4})
    with pytest.raises(ConfigError, match="federation.aggregate: 'mean' is not one of"):
        _cfg(**{"federation.aggregate": "mean"})


def test_median_defends_a_small_federation_against_a_boosted_attacker(tmp_path, write_scenario):
    """Scaling ×50 from 1 of 5 clients: the row-wise mean's quality collapses, the median's does not."""

    out = {}
    for rule in ("rowwise", "median"):
        cfg = compose.load(write_scenario(
            f"{rule}.toml", partition={"name": "iid", "num_clients": 5}, federation={"rounds": 2, "aggregate": rule},
            adversary={"attack": "scaling", "fraction": 0.2, "scale": 50.0}))
        rep = federate(InProcessGrid(5), cfg, tmp_path / rule, progress=False)
        out[rule] = np.loadtxt(tmp_path / rule / "embeddings.txt", skiprows=1, usecols=range(1, 17), comments=None)
        assert rep["aggregation"]["rule"] == rule and rep["attack"]["malicious_count"] == 1
    # (rows only the attacker and one honest client touched are not protected: a median of two is their mean)
    p90 = {rule: np.percentile(np.linalg.norm(v, axis=1), 90) for rule, v in out.items()}
    assert p90["rowwise"] > 5 * p90["median"], p90   # here ≈ 10.5 vs 0.9


def test_a_trimmed_huge_value_costs_the_kept_values_no_precision():
    # found by hypothesis: prefix sums through −4.5e15 rounded the kept 1.5s to 2.0
    honest = [np.full((1, 1), 1.5, np.float32)] * 3
    evil = [np.full((1, 1), -4503599895805953.0, np.float32)]
    trim, _ = _aggregate("trimmed_mean", honest + evil, **{"robust.trim_fraction": 0.49})
    assert trim.tolist() == [[1.5]]


def test_krum_gives_the_same_tables_whatever_order_the_replies_arrive_in(tmp_path, write_scenario):
    """With three clients and f = 0 each score is a nearest-neighbour distance, so the two
    closest updates tie on many rows: the server must break the tie by partition, not arrival."""
    from fedembed import checkpoint
    from inprocess_grid import InProcessGrid

    runs = {}
    for name, grid in (("oldest", InProcessGrid(3, per_pull=3)), ("newest", InProcessGrid(3, newest_first=True))):
        cfg = compose.load(write_scenario(f"{name}.toml", federation={"rounds": 2, "aggregate": "krum"},
                                             robust={"byzantine": 0}))
        federate(grid, cfg, tmp_path / name, progress=False)
        runs[name] = checkpoint.load(tmp_path / name).tables
    for table in runs["oldest"]:
        np.testing.assert_array_equal(runs["oldest"][table], runs["newest"][table])


def test_norm_bound_clips_sparse_uploads_like_dense_ones(tmp_path, write_scenario):
    """A sparse reply must not slip past the server's bound by being added row by row."""
    from fedembed import checkpoint
    from inprocess_grid import InProcessGrid

    from flwr.app import Array, ArrayRecord

    from fedembed.federation import wire

    def boost(content):
        """Client 0 skips its clipping stage and sends its update ×1000 (a malicious client)."""
        update = content.array_records[wire.UPDATE]
        content[wire.UPDATE] = ArrayRecord({k: Array(a.numpy() * 1000) for k, a in update.items()})
        return content

    runs = {}
    for name, sparse in (("dense", False), ("sparse", True)):
        cfg = compose.load(write_scenario(f"{name}.toml", federation={"rounds": 2, "aggregate": "norm_bound",
                                                                         "sparse_upload": sparse},
                                             robust={"norm_bound": 0.05}))
        federate(InProcessGrid(3, per_pull=3, tamper={0: boost}), cfg, tmp_path / name, progress=False)
        runs[name] = checkpoint.load(tmp_path / name).tables
    for table in runs["dense"]:
        np.testing.assert_allclose(runs["sparse"][table], runs["dense"][table], rtol=0, atol=1e-7)
