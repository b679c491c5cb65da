"""Coordinate-wise trimmed mean (Yin et al. 2018), row by row over the clients that touched the row.

For a row held by n clients, each coordinate drops its ⌊β·n⌋ largest and ⌊β·n⌋ smallest
values (β = robust.trim_fraction) and averages the rest, so up to ⌊β·n⌋ arbitrary values on
either side cannot move it outside the honest range. Needs every client's values: no secure sum.
"""
from __future__ import annotations

import numpy as np

from fedembed.aggregate import AGGREGATORS, BaseRule
from fedembed.aggregate.robust import UpdateCollector, presence_weights


class TrimmedMeanCollector(UpdateCollector):
    def __init__(self, shapes: dict[str, tuple[int, ...]], trim: float) -> None:
        super().__init__(shapes)
        self.trim = trim

    def combine(self, deltas: np.ndarray, touched: np.ndarray) -> np.ndarray:
        n_rows = touched.sum(axis=0)                                  # [R] holders per row
        k = np.floor(self.trim * n_rows).astype(np.int64)             # trimmed on each side
        ordered = np.sort(np.where(touched[:, :, None], deltas.astype(np.float64), np.inf), axis=0)
        rank = np.arange(ordered.shape[0])[:, None]                   # [N, 1] position in sorted order
        keep = (rank >= k[None, :]) & (rank < (n_rows - k)[None, :])  # [N, R]; sums, not prefix-sum
        kept = np.where(keep[:, :, None], ordered, 0.0).sum(axis=0)   # differences: a trimmed 1e15 must
                                                                      # not cost the kept values precision
        return kept / (n_rows - 2 * k)[:, None]


@AGGREGATORS.register("trimmed_mean")
class TrimmedMean(BaseRule):
    composes_with_secagg = False
    secagg_reason = ("trimming needs each coordinate's values in order, i.e. every client's value; secure "
                     "aggregation reveals only their sum")

    def __init__(self, cfg) -> None:
        self.trim = cfg.robust.trim_fraction

    def client_weights(self, row_counts: dict[str, np.ndarray], examples: int) -> dict[str, np.ndarray]:
        return presence_weights(row_counts)

    def collector(self, shapes: dict[str, tuple[int, ...]]) -> TrimmedMeanCollector:
        return TrimmedMeanCollector(shapes, self.trim)
