"""An empirical lower bound on ε from an attack's scores, with Clopper-Pearson confidence.

If a mechanism is (ε, δ)-DP, any test that says "in" when the score is ≥ t has
TPR ≤ e^ε·FPR + δ, and, with the roles swapped, TNR ≤ e^ε·FNR + δ (Kairouz et al. 2015;
the auditing of Jagielski et al. 2020, Nasr et al. 2021). So with TPR_lo a lower and
FPR_hi an upper confidence bound,

    ε ≥ max_t max( log((TPR_lo(t) − δ) / FPR_hi(t)),  log((TNR_lo(t) − δ) / FNR_hi(t)) ).

Every bound is a one-sided Clopper-Pearson bound at level α/(2T), T the number of
thresholds tried (a union bound), so *all* of them hold at once with probability
≥ 1 − α = `confidence`, and the maximum is then a valid lower bound whichever
threshold wins: choosing the threshold after seeing the scores costs nothing. Only
thresholds at positive scores are tried: between two of them TPR and FNR are constant
while FPR only falls and TNR only rises toward the next one, so no other threshold can
do better (tests/test_privacy_attacks_epsilon.py checks this against a search over every
threshold).

The binomial model assumes the trials are independent draws of the game — true for
independent runs; for many canaries in one run (what the canary attack does) it is the
usual approximation, which the randomised choice of planted canaries supports.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta


def cp_lower(k, n, alpha: float):
    """One-sided Clopper-Pearson lower bound: P(p < bound) ≤ alpha for k successes in n (arrays too)."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(invalid="ignore"):
        out = np.where(k <= 0, 0.0, beta.ppf(alpha, np.maximum(k, 1), n - k + 1))
    return float(out) if out.ndim == 0 else out


def cp_upper(k, n, alpha: float):
    """One-sided Clopper-Pearson upper bound: P(p > bound) ≤ alpha (arrays too)."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(invalid="ignore"):
        out = np.where(k >= n, 1.0, beta.ppf(1.0 - alpha, k + 1, np.maximum(n - k, 1)))
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class EpsilonBound:
    epsilon: float              # the lower bound (0 when no test beats δ)
    direction: str              # "in" (TPR/FPR) or "out" (TNR/FNR, roles swapped), "" when 0
    threshold: float | None
    hit_rate_lo: float          # TPR_lo (or TNR_lo) at the winning threshold
    miss_rate_hi: float         # FPR_hi (or FNR_hi)
    tests: int                  # T: bounds are at level (1 − confidence) / (2T)
    confidence: float
    delta: float

    def to_dict(self) -> dict:
        return asdict(self)


def _log_ratio(hit_lo: np.ndarray, miss_hi: np.ndarray, delta: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log((hit_lo - delta) / miss_hi)
    return np.where(hit_lo > delta, r, -np.inf)


def epsilon_lower_bound(pos: np.ndarray, neg: np.ndarray, delta: float = 0.0,
                        confidence: float = 0.95) -> EpsilonBound:
    """ε lower bound from scores of "in" trials (`pos`) and "out" trials (`neg`), higher = "in"."""
    pos, neg = np.sort(np.asarray(pos, float)), np.sort(np.asarray(neg, float))
    n, m = len(pos), len(neg)
    thresholds = np.unique(pos)
    tests = max(2 * len(thresholds), 1)
    a = (1.0 - confidence) / (2 * tests)
    if n == 0 or m == 0:
        return EpsilonBound(0.0, "", None, 0.0, 1.0, tests, confidence, delta)
    tp = n - np.searchsorted(pos, thresholds, side="left")      # pos ≥ t
    fp = m - np.searchsorted(neg, thresholds, side="left")      # neg ≥ t
    candidates = {"in": (cp_lower(tp, n, a), cp_upper(fp, m, a)),             # TPR_lo, FPR_hi
                  "out": (cp_lower(m - fp, m, a), cp_upper(n - tp, n, a))}    # TNR_lo, FNR_hi
    best = EpsilonBound(0.0, "", None, 0.0, 1.0, tests, confidence, delta)
    for direction, (hit_lo, miss_hi) in candidates.items():
        eps = _log_ratio(hit_lo, miss_hi, delta)
        i = int(np.argmax(eps))
        if eps[i] > best.epsilon:
            best = EpsilonBound(float(eps[i]), direction, float(thresholds[i]), float(hit_lo[i]), float(miss_hi[i]),
                                tests, confidence, delta)
    return best
