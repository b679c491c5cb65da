"""Krum and multi-Krum (Blanchard et al. 2017), row by row over the clients that touched the row.

For a row held by n clients, each holder's score is the sum of squared distances from its Δ to
its n − f − 2 nearest other holders' (f = robust.byzantine); Krum takes the Δ with the lowest
score, multi-Krum the mean of the m lowest (m = robust.selected, 0 = n − f). With n > 2f + 2
the choice is provably close to honest ones; a row held by fewer clients still gets the most
central Δ (at least one neighbour counted), without that guarantee. Krum compares individual
updates, so it cannot run on a secure sum. Cost: O(n²·D) per row.
"""
from __future__ import annotations

import numpy as np

from fedembed.aggregate import AGGREGATORS, BaseRule
from fedembed.aggregate.robust import UpdateCollector, presence_weights


def krum_scores(deltas: np.ndarray, touched: np.ndarray, byzantine: int) -> np.ndarray:
    """deltas [n, R, D], touched [n, R] → scores [n, R] (inf for clients that did not touch the row)."""
    d = deltas.astype(np.float64)
    sq = np.einsum("nrd,nrd->nr", d, d)
    dist = sq[:, None, :] + sq[None, :, :] - 2.0 * np.einsum("irD,jrD->ijr", d, d)   # [n, n, R]
    dist = np.maximum(dist, 0.0)
    n = d.shape[0]
    valid = touched[:, None, :] & touched[None, :, :] & ~np.eye(n, dtype=bool)[:, :, None]
    dist = np.where(valid, dist, np.inf)
    holders = touched.sum(axis=0)                                     # [R]
    neighbours = np.maximum(1, holders - byzantine - 2)               # [R]
    nearest = np.sort(dist, axis=1)                                   # [n, n, R] ascending over j
    prefix = np.cumsum(np.where(np.isfinite(nearest), nearest, 0.0), axis=1)
    idx = np.broadcast_to((np.minimum(neighbours, n) - 1)[None, None, :], (n, 1, d.shape[1]))
    scores = np.take_along_axis(prefix, idx, axis=1)[:, 0, :]
    scores = np.where(holders[None, :] == 1, 0.0, scores)             # a lone holder is its own choice
    return np.where(touched, scores, np.inf)


class KrumCollector(UpdateCollector):
    def __init__(self, shapes: dict[str, tuple[int, ...]], byzantine: int, selected: int | None) -> None:
        super().__init__(shapes)
        self.byzantine, self.selected = byzantine, selected

    def combine(self, deltas: np.ndarray, touched: np.ndarray) -> np.ndarray:
        scores = krum_scores(deltas, touched, self.byzantine)
        holders = touched.sum(axis=0)
        m = np.full_like(holders, self.selected) if self.selected else np.maximum(1, holders - self.byzantine)
        m = np.minimum(m, holders)                                     # [R]
        rank = np.argsort(np.argsort(scores, axis=0, kind="stable"), axis=0, kind="stable")  # 0 = best
        chosen = (rank < m[None, :]) & touched
        return np.einsum("nr,nrd->rd", chosen.astype(np.float64), deltas.astype(np.float64)) / m[:, None]


class _KrumRule(BaseRule):
    composes_with_secagg = False
    secagg_reason = ("Krum scores each update by its distances to the other clients' individual updates; "
                     "secure aggregation reveals only their sum")
    multi = False

    def __init__(self, cfg) -> None:
        self.byzantine = cfg.robust.byzantine
        self.selected = (cfg.robust.selected or None) if self.multi else 1

    def client_weights(self, row_counts: dict[str, np.ndarray], examples: int) -> dict[str, np.ndarray]:
        return presence_weights(row_counts)

    def collector(self, shapes: dict[str, tuple[int, ...]]) -> KrumCollector:
        return KrumCollector(shapes, self.byzantine, self.selected)


@AGGREGATORS.register("krum")
class Krum(_KrumRule):
    multi = False


@AGGREGATORS.register("multi_krum")
class MultiKrum(_KrumRule):
    multi = True
