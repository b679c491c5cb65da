"""DP-FTRL accounting against brute force and dp-accounting; schedules; the ledger charges; check(cfg)."""
from __future__ import annotations

import logging
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import RdpAccountant
from hypothesis import given, settings, strategies as st
from opacus.accountants import RDPAccountant

from fedembed import config as config_mod
from fedembed.errors import ConfigError
from fedembed.privacy import tree_accounting as ta
from fedembed.privacy.accountant import Accountant
from fedembed.privacy.distributed import effective_multiplier
from fedembed.privacy.schedule import CyclicCohorts, EveryRound, Explicit, schedule_for

ORDERS = RDPAccountant.DEFAULT_ALPHAS
REPLACE_SPECIAL = dp_accounting.privacy_accountant.NeighboringRelation.REPLACE_SPECIAL


@pytest.fixture(autouse=True)
def _quiet_dp_accounting():
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


# ---- brute force: the release as an explicit matrix

def _dyadic_cover(t: int) -> list[tuple[int, int]]:
    out, a = [], 0
    while a < t:
        h = 0
        while a % 2 ** (h + 1) == 0 and a + 2 ** (h + 1) <= t:
            h += 1
        out.append((a, a + 2 ** h))
        a += 2 ** h
    return out


def _release_matrix(steps: int, restart_every: int) -> np.ndarray:
    """Rows: every node some prefix of some tree uses (global steps (a, b]); columns: steps."""
    r = restart_every or steps
    rows = []
    for start in range(0, steps, r):
        length = min(r, steps - start)
        for a, b in sorted({blk for t in range(1, length + 1) for blk in _dyadic_cover(t)}):
            row = np.zeros(steps)
            row[start + a:start + b] = 1.0
            rows.append(row)
    return np.array(rows)


def _brute_factor(participations: list[list[int]], steps: int, restart_every: int) -> float:
    a = _release_matrix(steps, restart_every)
    best = 0.0
    for rs in participations:
        x = np.zeros(steps)
        x[[r - 1 for r in rs if r <= steps]] = 1.0
        best = max(best, float(np.sum((a @ x) ** 2)))
    return math.sqrt(best)


_schedules = st.integers(1, 48).flatmap(lambda steps: st.tuples(
    st.just(steps),
    st.lists(st.lists(st.integers(1, steps), max_size=steps, unique=True), min_size=1, max_size=6),
    st.integers(0, steps)))


@settings(max_examples=150, deadline=None)
@given(case=_schedules)
def test_sensitivity_factor_matches_the_explicit_release_matrix(case):
    steps, participations, restart_every = case
    assert ta.sensitivity_factor(participations, steps, restart_every) == pytest.approx(
        _brute_factor(participations, steps, restart_every), rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(case=_schedules, dim=st.integers(1, 4), seed=st.integers(0, 10 ** 6))
def test_no_clipped_updates_move_the_release_by_more_than_c_times_the_factor(case, dim, seed):
    """Any updates of norm ≤ 1 at a client's steps move the node vector by ≤ factor; equal
    updates reach it (the bound is tight)."""
    steps, participations, restart_every = case
    a = _release_matrix(steps, restart_every)
    rng = np.random.default_rng(seed)
    rs = participations[0]
    u = np.zeros((steps, dim))
    for r in rs:
        v = rng.normal(size=dim)
        u[r - 1] = v / np.linalg.norm(v) * rng.uniform(0, 1)
    factor = ta.sensitivity_factor([rs], steps, restart_every)
    assert np.linalg.norm(a @ u) <= factor * (1 + 1e-12)
    same = np.zeros((steps, dim))
    same[[r - 1 for r in rs]] = np.eye(dim)[0]
    assert np.linalg.norm(a @ same) == pytest.approx(factor, rel=1e-12)


def test_every_round_factor_is_the_sum_of_squared_node_lengths():
    for steps, r in [(1, 0), (2, 0), (16, 0), (100, 0), (100, 16), (37, 5)]:
        lengths = [min(r or steps, steps - s) for s in range(0, steps, r or steps)]
        expected = sum((t & -t) ** 2 for n in lengths for t in range(1, n + 1))
        assert ta.sensitivity_factor(EveryRound(7), steps, r) ** 2 == pytest.approx(expected)


# ---- dp-accounting's tree aggregation event

@settings(max_examples=25, deadline=None)
@given(steps=st.integers(1, 2000), z=st.floats(0.3, 20.0), log_delta=st.floats(-10.0, -3.0))
def test_one_participation_per_epoch_matches_dp_accounting(steps, z, log_delta):
    """A cohort schedule with as many cohorts as steps: each client once, the single-epoch tree."""
    delta = 10.0 ** log_delta
    factor = ta.sensitivity_factor(CyclicCohorts(num_clients=2 * steps, cohort_size=2), steps)
    assert factor ** 2 == pytest.approx(math.ceil(math.log2(steps + 1)))
    acc = RdpAccountant(orders=ORDERS, neighboring_relation=REPLACE_SPECIAL)
    acc.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(z, steps))
    assert ta.epsilon(z, factor, delta) == pytest.approx(acc.get_epsilon(delta), rel=1e-3)


@settings(max_examples=20, deadline=None)
@given(period=st.integers(1, 300), epochs=st.integers(1, 20), z=st.floats(0.5, 20.0))
def test_one_participation_per_restarted_tree_matches_dp_accounting_self_composed(period, epochs, z):
    """Restart every epoch: the per-epoch tree event composed `epochs` times."""
    delta = 1e-6
    sched = CyclicCohorts(num_clients=period, cohort_size=1)
    factor = ta.sensitivity_factor(sched, period * epochs, restart_every=period)
    acc = RdpAccountant(orders=ORDERS, neighboring_relation=REPLACE_SPECIAL)
    acc.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.SingleEpochTreeAggregationDpEvent(z, period),
                                                  epochs))
    assert ta.epsilon(z, factor, delta) == pytest.approx(acc.get_epsilon(delta), rel=1e-3)


@settings(max_examples=20, deadline=None)
@given(steps=st.integers(2, 500), data=st.data(), z=st.floats(0.5, 10.0))
def test_one_participation_across_several_trees_matches_dp_accounting_step_counts(steps, data, z):
    restart_every = data.draw(st.integers(1, steps))
    counts = [min(restart_every, steps - s) for s in range(0, steps, restart_every)]
    factor = ta.sensitivity_factor(CyclicCohorts(steps, 1), steps, restart_every)
    acc = RdpAccountant(orders=ORDERS, neighboring_relation=REPLACE_SPECIAL)
    acc.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(z, counts))
    assert ta.epsilon(z, factor, 1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-3)


@settings(max_examples=25, deadline=None)
@given(mu=st.floats(0.05, 8.0), log_delta=st.floats(-10.0, -2.0))
def test_exact_epsilon_matches_dp_accounting_analytic_gaussian_and_beats_rdp(mu, log_delta):
    delta = 10.0 ** log_delta
    exact = ta.gaussian_epsilon(mu, delta, "exact")
    assert exact == pytest.approx(dp_accounting.get_epsilon_gaussian(1.0 / mu, delta), rel=1e-6, abs=1e-9)
    assert exact <= ta.gaussian_epsilon(mu, delta, "rdp") + 1e-9


def test_prv_is_close_to_exact():
    for mu in (0.2, 1.0, 3.0):
        exact = ta.gaussian_epsilon(mu, 1e-6, "exact")
        assert exact - 0.02 <= ta.gaussian_epsilon(mu, 1e-6, "prv") <= exact + 0.05


def test_epsilon_edges():
    assert ta.epsilon(1.0, 0.0, 1e-5) == 0.0
    assert math.isinf(ta.epsilon(0.0, 2.0, 1e-5))
    with pytest.raises(ValueError, match="unknown accountant"):
        ta.gaussian_epsilon(1.0, 1e-5, "gdp")


# ---- calibration

@pytest.mark.parametrize("accountant", ["rdp", "exact"])
@pytest.mark.parametrize("target, factor", [(1.0, 1.0), (8.0, math.sqrt(22.0)), (3.0, 7.5)])
def test_noise_multiplier_for_is_the_smallest_that_meets_the_target(accountant, target, factor):
    z = ta.noise_multiplier_for(target, 1e-6, factor, accountant)
    assert ta.epsilon(z, factor, 1e-6, accountant) <= target
    assert ta.epsilon(z * (1 - 1e-4), factor, 1e-6, accountant) > target
    assert ta.noise_multiplier_for(target, 1e-6, 2 * factor, accountant) == pytest.approx(2 * z, rel=1e-5)


def test_adaptive_split_reduces_to_andrew_et_al_and_keeps_mu():
    z, sb = 0.8, 2.0
    assert ta.adaptive_update_multiplier(z, 1.0, 1, sb) == pytest.approx((z ** -2 - (2 * sb) ** -2) ** -0.5)
    sched, steps, r = EveryRound(4), 12, 4
    factor = ta.sensitivity_factor(sched, steps, r)
    z_update = ta.adaptive_update_multiplier(z, factor, steps, sb)
    assert z_update > z
    assert ta.mu_squared(sched, steps, r, z_update, sb) == pytest.approx((factor / z) ** 2, rel=1e-12)
    with pytest.raises(ValueError, match="clip_count_stddev"):
        ta.adaptive_update_multiplier(z, factor, steps, 0.1)


# ---- the ledger, round by round

@pytest.mark.parametrize("sched, restart_every", [(EveryRound(3), 0), (CyclicCohorts(12, 3, seed=4), 0),
                                                  (CyclicCohorts(12, 3, seed=4), 5),
                                                  (Explicit([[1, 2, 9], [4, 5, 6, 7], [3]]), 4)])
def test_ledger_charges_compose_to_the_epsilon_of_everything_released_so_far(sched, restart_every):
    z, delta = 1.3, 1e-5
    acc = Accountant("rdp")
    for step in range(1, 11):
        mu2 = ta.mu_squared(sched, step, restart_every, z)
        acc.step(*ta.charge(acc.history, mu2))
        factor = ta.sensitivity_factor(sched, step, restart_every)
        assert ta.spent_mu_squared(acc.history) == pytest.approx((factor / z) ** 2, rel=1e-9)
        assert acc.epsilon(delta) == pytest.approx(ta.epsilon(z, factor, delta), rel=1e-9)


def test_charges_never_refund_and_infinite_noise_free_steps_are_infinite():
    acc = Accountant("rdp")
    acc.step(*ta.charge(acc.history, 4.0))
    assert ta.charge(acc.history, 4.0) == (1.0, 0.0)
    assert ta.charge(acc.history, 1.0) == (1.0, 0.0)
    acc.step(*ta.charge(acc.history, math.inf))
    assert math.isinf(acc.epsilon(1e-5))


def test_distributed_per_tree_multipliers():
    """Per-tree z_eff = z·√(|H|/m): a tree with fewer always-present clients costs more."""
    sched, steps, r, z = EveryRound(10), 8, 4, 2.0
    per_tree = [effective_multiplier(z, 10, 10), effective_multiplier(z, 7, 10)]
    mu2 = ta.mu_squared(sched, steps, r, per_tree)
    sq = ta.sensitivity_factor(sched, 4) ** 2
    assert mu2 == pytest.approx(sq / per_tree[0] ** 2 + sq / per_tree[1] ** 2)
    assert mu2 > ta.mu_squared(sched, steps, r, z)


# ---- schedules

@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), data=st.data(), steps=st.integers(1, 80), seed=st.integers(0, 1000))
def test_cyclic_cohorts_partition_the_clients_and_match_their_patterns(n, data, steps, seed):
    m = data.draw(st.integers(1, n))
    sched = CyclicCohorts(n, m, seed)
    cohorts = sched.cohorts()
    assert sorted(c for co in cohorts for c in co) == list(range(n))
    assert len(cohorts) == sched.period == max(1, n // m)
    seen = {c: [r for r in range(1, steps + 1) if c in sched.clients(r)] for c in range(n)}
    assert sorted({tuple(v) for v in seen.values() if v}) == sorted(tuple(p) for p in sched.patterns(steps))
    if n % m == 0:
        assert max(len(v) for v in seen.values()) == math.ceil(steps * m / n)


def test_schedule_for_the_scenario():
    assert isinstance(schedule_for(_cfg(**{"federation.clients_per_round": 0})), EveryRound)
    s = schedule_for(_cfg(**{"federation.clients_per_round": 10}))
    assert isinstance(s, CyclicCohorts) and s.period == 10


# ---- check(cfg)

def _cfg(**over) -> config_mod.Config:
    base = {"privacy.user_level": True, "federation.row_weight": "presence", "partition.num_clients": 100,
            "federation.clients_per_round": 10, "privacy.denominator": "public", "secagg.enabled": False}
    return config_mod.load(None, {**base, **over})


def test_check_accepts_the_defaults_and_a_dp_ftrl_scenario():
    ta.check(config_mod.load(None, {}))
    ta.check(_cfg(**{"privacy.mechanism": "ftrl_tree", "privacy.restart_every": 20}))
    ta.check(_cfg(**{"privacy.mechanism": "ftrl_tree", "secagg.enabled": True, "federation.clients_per_round": 0}))


@pytest.mark.parametrize("over, key", [
    ({"privacy.mechanism": "tree"}, "privacy.mechanism"),
    ({"privacy.restart_every": -1}, "privacy.restart_every"),
    ({"privacy.restart_every": 5}, "privacy.restart_every"),
    ({"privacy.mechanism": "ftrl_tree", "privacy.user_level": False, "privacy.denominator": "noisy"},
     "privacy.user_level"),
    ({"privacy.mechanism": "ftrl_tree", "privacy.denominator": "noisy"}, "privacy.denominator"),
    ({"privacy.mechanism": "ftrl_tree", "privacy.adaptive_clip": True}, "privacy.restart_every > 0"),
    ({"privacy.mechanism": "ftrl_tree", "secagg.enabled": True}, "federation.clients_per_round = 0"),
])
def test_check_refuses_with_one_line_naming_the_key(over, key):
    cfg = _cfg(**over) if "privacy.user_level" not in over else config_mod.load(None, {
        "privacy.mechanism": "ftrl_tree"})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("+", r"\+")) as err:
        ta.check(cfg)
    assert "\n" not in str(err.value)
