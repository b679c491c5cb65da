"""ε for the Poisson-subsampled Gaussian mechanism, composed over rounds, via Opacus' accountants.

One `Accountant` per unit of privacy. Each round of user-level DP-FedAvg is one step of the
subsampled Gaussian: noise multiplier z (noise std ÷ L2 sensitivity), sample rate q (the
probability that a given client takes part; the amplification). Opacus' `RDPAccountant`
(Mironov 2017; subsampling per Mironov, Talwar & Zhang 2019) or `PRVAccountant` (Gopi et
al. 2021) does the composition; both assume add/remove-one adjacency, which is the
adjacency the clipping bound C is stated for.

The whole state is Opacus' `history` — a list of (z, q, steps) — so it is saved in the
checkpoint as JSON and a resumed run recomposes exactly what an uninterrupted run would.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Any

from opacus.accountants import IAccountant, PRVAccountant, RDPAccountant

KINDS: dict[str, type[IAccountant]] = {"rdp": RDPAccountant, "prv": PRVAccountant}


class Accountant:
    def __init__(self, kind: str = "rdp") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown accountant {kind!r}; choose one of {sorted(KINDS)}")
        self.kind = kind
        self._impl: IAccountant = KINDS[kind]()

    @property
    def history(self) -> list[tuple[float, float, int]]:
        return list(self._impl.history)

    @property
    def steps(self) -> int:
        return sum(int(s) for _, _, s in self._impl.history)

    def step(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Compose `steps` more rounds of the subsampled Gaussian (z, q)."""
        if noise_multiplier < 0 or not 0 <= sample_rate <= 1 or steps < 0:
            raise ValueError(f"invalid mechanism z={noise_multiplier}, q={sample_rate}, steps={steps}")
        for _ in range(steps):  # Opacus merges equal consecutive entries into one (z, q, n)
            self._impl.step(noise_multiplier=float(noise_multiplier), sample_rate=float(sample_rate))

    def epsilon(self, delta: float) -> float:
        """ε at `delta` after everything composed so far: 0 before any step, ∞ if any step had no noise."""
        hist = self._impl.history
        if not hist or all(q == 0 or s == 0 for _, q, s in hist):
            return 0.0
        if any(z == 0 and q > 0 and s > 0 for z, q, s in hist):
            return math.inf
        with warnings.catch_warnings():
            # "optimal order is the largest/smallest alpha" only says the bound could be tighter
            warnings.simplefilter("ignore", UserWarning)
            # PRV takes log(0) for q = 1 on the way to a finite answer
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(self._impl.get_epsilon(delta=delta))

    def peek(self, noise_multiplier: float, sample_rate: float, delta: float) -> float:
        """ε after one more round of (z, q), leaving this accountant as it is (for the budget)."""
        ahead = self.copy()
        ahead.step(noise_multiplier, sample_rate)
        return ahead.epsilon(delta)

    def copy(self) -> "Accountant":
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "history": [[float(z), float(q), int(s)] for z, q, s in self._impl.history]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Accountant":
        acc = cls(str(d["kind"]))
        acc._impl.history = [(float(z), float(q), int(s)) for z, q, s in d["history"]]
        return acc


History = list[tuple[float, float, int]]   # Opacus' (noise multiplier, sample rate, steps) entries


def epsilon_after(history: History, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                  kind: str = "rdp") -> float:
    """ε at `delta` of `history` followed by `steps` more steps of (z, q): heterogeneous composition."""
    acc = Accountant.from_dict({"kind": kind, "history": list(history)})
    acc.step(noise_multiplier, sample_rate, 0)
    acc._impl.history.append((float(noise_multiplier), float(sample_rate), int(steps)))
    return acc.epsilon(delta)


def remaining_noise_multiplier(history: History, sample_rate: float, steps: int, target_epsilon: float,
                               delta: float, kind: str = "rdp", tolerance: float = 0.01) -> float:
    """The smallest z (to within `tolerance` in ε) such that `history` plus `steps` steps of (z, q) stays ≤ target.

    Opacus' `get_noise_multiplier` search, over the composition of what was already spent
    (possibly with other z and q) and what is still to come: how a run that is extended
    after it started re-spends only the budget that is left. ValueError when nothing is left.
    """
    spent = Accountant.from_dict({"kind": kind, "history": list(history)}).epsilon(delta)
    if not spent < target_epsilon:
        raise ValueError(f"the budget is spent: ε = {spent:.4g} already, target {target_epsilon:g}")
    if steps <= 0:
        return 0.0
    lo, hi = 0.0, 10.0
    while epsilon_after(history, hi, sample_rate, steps, delta, kind) > target_epsilon:
        lo, hi = hi, 2 * hi
        if hi > 1e7:
            raise ValueError(f"no noise multiplier keeps ε ≤ {target_epsilon:g} (spent {spent:.4g})")
    while True:
        eps = epsilon_after(history, hi, sample_rate, steps, delta, kind)
        if target_epsilon - eps <= tolerance or hi - lo < 1e-9:
            return hi
        mid = (lo + hi) / 2
        if epsilon_after(history, mid, sample_rate, steps, delta, kind) > target_epsilon:
            lo = mid
        else:
            hi = mid
