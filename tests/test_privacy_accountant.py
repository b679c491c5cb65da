"""The accountant's ε against independent computations: closed form, dp-accounting's RDP and PLD."""
from __future__ import annotations

import json
import logging
import math
import warnings

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon
from hypothesis import given, settings, strategies as st
from opacus.accountants import RDPAccountant
from scipy import integrate
from scipy.integrate import IntegrationWarning

from fedembed.privacy.accountant import Accountant

ORDERS = RDPAccountant.DEFAULT_ALPHAS


@pytest.fixture(autouse=True)
def _quiet_dp_accounting():
    """dp-accounting logs a warning for every fractional order whose series it gives up on."""
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _ours(z: float, q: float, steps: int, delta: float, kind: str = "rdp") -> float:
    acc = Accountant(kind)
    acc.step(z, q, steps)
    return acc.epsilon(delta)


def _dp_accounting_rdp(z: float, q: float, steps: int, delta: float) -> float:
    acc = RdpAccountant(orders=ORDERS)
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)
    return acc.get_epsilon(delta)


def _fractional_order_rdp(q: float, z: float, alpha: float) -> float:
    """RDP of one step at a fractional order, from the definition (Mironov, Talwar & Zhang 2019):
    log E_{x~N(0,z²)}[((1−q) + q·exp((2x−1)/(2z²)))^α] / (α−1), integrated numerically as log1p of
    E[… − 1] so that tiny values keep their precision."""
    s2 = z * z
    lognorm = -0.5 * math.log(2 * math.pi * s2)

    def excess(x: float) -> float:
        la = alpha * math.log1p(q * math.expm1((2 * x - 1) / (2 * s2)))
        lp = lognorm - x * x / (2 * s2)
        return math.exp(lp + la) - math.exp(lp) if la > 1 else math.exp(lp) * math.expm1(la)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        v, _ = integrate.quad(excess, -40 * z, alpha + 40 * z, points=[0.5, alpha], limit=400,
                              epsabs=0, epsrel=1e-10)
    return math.log1p(v) / (alpha - 1)


def _exact(z: float, q: float, steps: int, delta: float) -> float:
    """ε from exact per-order RDP: integer orders by dp-accounting's binomial expansion, fractional
    ones by integration (dp-accounting's fractional-order values are looser upper bounds), converted
    to (ε, δ) by dp-accounting's `compute_epsilon`."""
    ints = [o for o in ORDERS if float(o).is_integer()]
    acc = RdpAccountant(orders=ints)
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)
    per_order = dict(zip(ints, acc.rdp))
    rdp = [per_order[o] if o in per_order else steps * _fractional_order_rdp(q, z, o) for o in ORDERS]
    return compute_epsilon(ORDERS, rdp, delta)[0]


def _closed_form(z: float, steps: int, delta: float) -> float:
    """q = 1: the Gaussian mechanism's RDP is α/(2z²) per step; RDP → (ε, δ) by Balle et al. 2020's conversion."""
    a = np.asarray(ORDERS, dtype=float)
    rdp = steps * a / (2 * z * z)
    eps = rdp + np.log1p(-1 / a) - (np.log(delta) + np.log(a)) / (a - 1)
    return float(np.min(eps))


@pytest.mark.parametrize("z, steps, delta", [(1.0, 1, 1e-5), (0.8, 10, 1e-6), (3.0, 100, 1e-5), (10.0, 5, 1e-9)])
def test_rdp_without_sampling_equals_the_gaussian_closed_form(z, steps, delta):
    assert _ours(z, 1.0, steps, delta) == pytest.approx(_closed_form(z, steps, delta), rel=1e-9)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(z=st.floats(0.5, 10.0), q=st.floats(1e-3, 1.0), steps=st.integers(1, 1000),
       log_delta=st.floats(-9.0, -3.0))
def test_rdp_matches_an_independent_computation(z, q, steps, log_delta):
    delta = 10.0 ** log_delta
    ours = _ours(z, q, steps, delta)
    assert ours == pytest.approx(_exact(z, q, steps, delta), rel=1e-6, abs=1e-9)
    # dp-accounting's own figure bounds fractional orders from above (and drops some): never below ours
    assert ours <= _dp_accounting_rdp(z, q, steps, delta) * (1 + 1e-9) + 1e-12


@settings(max_examples=25, deadline=None, derandomize=True)
@given(z=st.floats(0.5, 8.0), q=st.floats(1e-3, 1.0), steps=st.integers(1, 500), factor=st.floats(1.05, 3.0))
def test_epsilon_grows_with_steps_and_sample_rate_and_falls_with_noise(z, q, steps, factor):
    delta = 1e-5
    base = _ours(z, q, steps, delta)
    slack = 1e-9 * max(1.0, base)
    assert _ours(z, q, steps + 1, delta) >= base - slack
    assert _ours(z, min(1.0, q * factor), steps, delta) >= base - slack
    assert _ours(z * factor, q, steps, delta) <= base + slack


@pytest.mark.parametrize("z, q, steps, delta", [(1.0, 0.1, 100, 1e-5), (0.8, 1.0, 5, 1e-5),
                                                 (2.0, 0.01, 1000, 1e-6)])
def test_prv_brackets_the_pld_figure_and_beats_rdp(z, q, steps, delta):
    pld = PLDAccountant(value_discretization_interval=1e-3)
    pld.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)
    exact = pld.get_epsilon(delta)
    prv = _ours(z, q, steps, delta, "prv")
    assert exact - 0.01 <= prv <= exact + 0.05           # PRV reports an upper bound, eps_error = 0.01
    assert prv <= _ours(z, q, steps, delta, "rdp")


def test_edge_cases_nothing_spent_no_noise_and_peek():
    acc = Accountant()
    assert acc.epsilon(1e-5) == 0.0 and acc.steps == 0
    assert acc.peek(1.0, 0.5, 1e-5) > 0 and acc.steps == 0   # peeking spends nothing
    acc.step(1.0, 0.0)
    assert acc.epsilon(1e-5) == 0.0                          # nobody can be sampled
    acc.step(0.0, 0.5)
    assert math.isinf(acc.epsilon(1e-5))
    with pytest.raises(ValueError, match="unknown accountant"):
        Accountant("gdp")
    with pytest.raises(ValueError):
        acc.step(-1.0, 0.5)


@pytest.mark.parametrize("kind", ["rdp", "prv"])
def test_state_survives_json_and_continues_like_an_uninterrupted_accountant(kind):
    straight, first = Accountant(kind), Accountant(kind)
    for z, q in [(1.0, 0.1)] * 3 + [(1.5, 0.2)] * 2:
        straight.step(z, q)
    for z, q in [(1.0, 0.1)] * 3:
        first.step(z, q)
    resumed = Accountant.from_dict(json.loads(json.dumps(first.to_dict())))
    for z, q in [(1.5, 0.2)] * 2:
        resumed.step(z, q)
    assert resumed.history == straight.history == [(1.0, 0.1, 3), (1.5, 0.2, 2)]
    assert resumed.epsilon(1e-5) == straight.epsilon(1e-5)
