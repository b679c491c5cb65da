"""Poisson client sampling: the sampling that the accountant's amplification assumes.

Each client takes part in a round independently with probability q, so the number of
clients per round varies (and may be 0). Amplification by subsampling holds only if who
took part stays secret, so the draw uses fresh OS entropy, never the scenario's `seed`
(which is written to config.toml for anyone to read).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def secret_rng() -> np.random.Generator:
    """A generator seeded from the OS's entropy pool (tests replace this to fix the draws)."""
    return np.random.default_rng()


def poisson_sample(clients: Sequence[int], q: float, rng: np.random.Generator) -> list[int]:
    """Every client independently with probability q (q = 1: all of them)."""
    if q >= 1.0:
        return sorted(clients)
    keep = rng.random(len(clients)) < q
    return sorted(int(c) for c, k in zip(clients, keep) if k)
