"""Coordinate-wise median (Yin et al. 2018), row by row over the clients that touched the row.

Each coordinate of a row is the median of that coordinate over the row's holders; with fewer
than half of them malicious it stays within the range of honest values, however large the
malicious ones. It needs every client's value, so it cannot run on a secure sum.
"""
from __future__ import annotations

import warnings

import numpy as np

from fedembed.aggregate import AGGREGATORS, BaseRule
from fedembed.aggregate.robust import UpdateCollector, presence_weights


class MedianCollector(UpdateCollector):
    def combine(self, deltas: np.ndarray, touched: np.ndarray) -> np.ndarray:
        masked = np.where(touched[:, :, None], deltas.astype(np.float64), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows are touched by ≥ 1 client; belt and braces
            return np.nan_to_num(np.nanmedian(masked, axis=0))


@AGGREGATORS.register("median")
class Median(BaseRule):
    composes_with_secagg = False
    secagg_reason = ("the median of a coordinate needs every client's value of it; secure aggregation "
                     "reveals only their sum")

    def __init__(self, cfg) -> None:
        pass

    def client_weights(self, row_counts: dict[str, np.ndarray], examples: int) -> dict[str, np.ndarray]:
        return presence_weights(row_counts)

    def collector(self, shapes: dict[str, tuple[int, ...]]) -> MedianCollector:
        return MedianCollector(shapes)
