"""The empirical ε lower bound: conservative on mechanisms whose ε is known, equal to independent computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.optimize import brentq
from scipy.stats import binomtest, norm

from fedembed.attacks.privacy.empirical_epsilon import cp_lower, cp_upper, epsilon_lower_bound

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)


def gaussian_epsilon(sigma: float, delta: float) -> float:
    """Exact ε(δ) of the Gaussian mechanism with sensitivity 1 and noise σ (Balle & Wang 2018, Thm. 8)."""
    mu = 1.0 / sigma
    def excess(eps: float) -> float:
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta
    return 0.0 if excess(0.0) <= 0 else brentq(excess, 0.0, 500.0)


def randomized_response(eps: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n outputs on input 1 and n on input 0 of ε-DP randomized response (truth kept w.p. e^ε/(1+e^ε))."""
    keep = math.exp(eps) / (1 + math.exp(eps))
    return (rng.random(n) < keep).astype(float), (rng.random(n) >= keep).astype(float)


def brute_force(pos, neg, delta, alpha_per_test) -> float:
    """Max over *every* threshold (all scores and ±∞) of both ratios, with scipy's exact (CP) intervals."""
    best = 0.0
    n, m = len(pos), len(neg)
    def lo(k, total):  # one-sided level a = two-sided interval at 1 - 2a
        return binomtest(k, total).proportion_ci(1 - 2 * alpha_per_test, "exact").low
    def hi(k, total):
        return binomtest(k, total).proportion_ci(1 - 2 * alpha_per_test, "exact").high
    for t in np.concatenate([np.unique(np.concatenate([pos, neg])), [np.inf, -np.inf]]):
        tp, fp = int((pos >= t).sum()), int((neg >= t).sum())
        for hit, nh, miss, nm in ((tp, n, fp, m), (m - fp, m, n - tp, n)):
            h, mi = lo(hit, nh), hi(miss, nm)
            if h > delta:
                best = max(best, math.log((h - delta) / mi) if mi > 0 else math.inf)
    return best


def test_clopper_pearson_matches_scipy_and_closed_forms():
    a = 0.01
    for k, n in [(0, 10), (3, 10), (10, 10), (17, 200), (199, 200)]:
        ci = binomtest(k, n).proportion_ci(1 - 2 * a, "exact")
        assert cp_lower(k, n, a) == pytest.approx(ci.low, abs=1e-10)
        assert cp_upper(k, n, a) == pytest.approx(ci.high, abs=1e-10)
    n = 50
    assert cp_lower(n, n, a) == pytest.approx(a ** (1 / n))          # all successes
    assert cp_upper(0, n, a) == pytest.approx(1 - a ** (1 / n))      # none


def test_perfect_separation_gives_the_closed_form_bound():
    n = m = 1000
    b = epsilon_lower_bound(np.ones(n), np.zeros(m), delta=0.0, confidence=0.95)
    a = 0.05 / (2 * b.tests)
    assert b.tests == 2
    assert b.epsilon == pytest.approx(math.log(a ** (1 / n) / (1 - a ** (1 / m))))


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(10, 30), delta=st.sampled_from([0.0, 1e-3, 0.05]))
def test_bound_equals_a_search_over_every_threshold(seed, n, delta):
    rng = np.random.default_rng(seed)
    pos = np.round(rng.normal(1.0, 1.0, n), 1)      # rounded: ties between and within the samples
    neg = np.round(rng.normal(0.0, 1.0, n + 7), 1)
    b = epsilon_lower_bound(pos, neg, delta, 0.9)
    assert b.epsilon == pytest.approx(brute_force(pos, neg, delta, 0.1 / (2 * b.tests)), rel=1e-9, abs=1e-12)


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), eps=st.floats(0.05, 4.0), n=st.integers(30, 3000))
def test_never_above_the_epsilon_of_randomized_response(seed, eps, n):
    pos, neg = randomized_response(eps, n, np.random.default_rng(seed))
    assert epsilon_lower_bound(pos, neg, 0.0, 0.95).epsilon <= eps


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), sigma=st.floats(0.3, 5.0), n=st.integers(50, 3000),
       delta=st.sampled_from([1e-6, 1e-4, 1e-2]))
def test_never_above_the_epsilon_of_the_gaussian_mechanism(seed, sigma, n, delta):
    rng = np.random.default_rng(seed)
    pos, neg = rng.normal(1.0, sigma, n), rng.normal(0.0, sigma, n)   # M(D) vs M(D'), sensitivity 1
    assert epsilon_lower_bound(pos, neg, delta, 0.95).epsilon <= gaussian_epsilon(sigma, delta)


def test_coverage_and_power_on_randomized_response():
    """Across many independent audits the bound exceeds the true ε no more often than 1 − confidence
    (the union bound makes it far rarer), and with enough trials it gets close to the true ε."""
    rng = np.random.default_rng(7)
    eps = 1.0
    bounds = [epsilon_lower_bound(*randomized_response(eps, 400, rng), 0.0, 0.8).epsilon for _ in range(300)]
    assert np.mean(np.array(bounds) > eps) <= 0.2
    strong = epsilon_lower_bound(*randomized_response(2.0, 20000, rng), 0.0, 0.95).epsilon
    assert 1.8 < strong <= 2.0


def test_gaussian_epsilon_reference_agrees_with_its_privacy_loss_distribution():
    """Cross-check of the closed form used above: δ(ε) = E[(1 − e^(ε − L))₊] with the privacy loss
    L ~ N(μ²/2, μ²), μ = 1/σ, integrated numerically."""
    from scipy.integrate import quad

    for sigma, delta in [(1.0, 1e-5), (2.0, 1e-3), (0.5, 1e-6)]:
        eps, mu = gaussian_epsilon(sigma, delta), 1.0 / sigma
        integrand = lambda x: (1 - math.exp(eps - x)) * norm.pdf(x, mu**2 / 2, mu)  # noqa: E731
        got, _ = quad(integrand, eps, mu**2 / 2 + 40 * mu)
        assert got == pytest.approx(delta, rel=1e-4)


def test_no_signal_no_bound():
    assert epsilon_lower_bound(np.zeros(100), np.zeros(100), 0.0).epsilon == 0.0
    assert epsilon_lower_bound(np.array([]), np.zeros(5)).epsilon == 0.0
