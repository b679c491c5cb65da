"""A data-independent per-row denominator for user-level DP-FedAvg (`privacy.denominator = "public"`).

With the default `noisy` denominator each client also sends its per-row presence weights,
which take a share (β) of the clip budget, and the server divides every row by its noisy
weight sum, leaving rows below `min_weight` noise stds untouched: a row moves only when
enough sampled clients touched it. Here the client sends no weights at all (the whole
clip budget goes to the deltas) and the server divides row r by what it *expects* to be
there, from public numbers only:

    d_r = m · max(s_r, min_share),   s_r = 1 − exp(−c_r / N)

m = q·N is the expected number of sampled clients, c_r the row's count in the public
vocabulary and N the number of clients; s_r is the chance that a client holds the word at
least once when its c_r occurrences fall on clients independently and uniformly (Poisson
with mean c_r/N), so m·s_r is the expected number of sampled clients touching row r. Being
data-independent, d_r is post-processing of the noised sum: it costs no privacy. The floor
`min_share` bounds how much a rare row's noise is amplified (d_r ≥ m·min_share); 1 gives
every row the same denominator m (FedAvg over the expected cohort).
"""
from __future__ import annotations

import numpy as np


def presence_share(counts: np.ndarray, num_clients: int) -> np.ndarray:
    """s_r = 1 − exp(−c_r/N): the probability that a given client holds word r at least once."""
    c = np.asarray(counts, dtype=np.float64)
    return -np.expm1(-c / float(num_clients))


def public_denominator(counts: np.ndarray, num_clients: int, expected_clients: float,
                       min_share: float) -> np.ndarray:
    """d_r = m·max(s_r, min_share) [V], float64, every entry > 0 when m > 0 and min_share > 0."""
    return expected_clients * np.maximum(presence_share(counts, num_clients), min_share)
