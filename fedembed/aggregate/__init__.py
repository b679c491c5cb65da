"""Aggregation rules, one per file, registered by name (`federation.aggregate`).

rowwise and fedavg are weighted means, Σ_k w_k·Δ_k / Σ_k w_k taken row by row, so that the
server only needs two sums (which secure aggregation can give it): the client multiplies
its delta by its weights (`client_weights`, a client-side stage) and the server divides.
The robust rules (median, trimmed_mean, krum, multi_krum, norm_bound) bring a `collector`
the server folds replies into instead, and say whether they compose with secure aggregation.

Every rule declares what it can do in the `AggregateRule` Protocol (`composes_with_secagg`,
its client stages, its collector); `BaseRule` gives a weighted mean's answers, so a rule
states only where it differs, and nothing asks a rule with hasattr what it supports.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from fedembed.aggregate.accumulate import Accumulator, Collector
from fedembed.registry import Registry
from fedembed.updates import Stage

MEAN_REASON = ("a weighted mean needs only Σ w·Δ and Σ w, which is what secure aggregation "
               "gives the server")


class AggregateRule(Protocol):
    composes_with_secagg: bool     # can the rule run on a secure sum (the server never sees one update)?
    secagg_reason: str             # why (report.json's aggregation.reason)

    def client_weights(self, row_counts: dict[str, np.ndarray], examples: int) -> dict[str, np.ndarray]: ...

    def client_stages(self) -> list[Stage]: ...        # run on the client after the row weights

    def collector(self, shapes: dict[str, tuple[int, ...]]) -> Collector: ...


class BaseRule:
    """The defaults every rule starts from, a weighted mean's: composes with SecAgg+, no client
    stage, running sums. A robust rule overrides what differs."""
    composes_with_secagg = True
    secagg_reason = MEAN_REASON

    def client_stages(self) -> list[Stage]:
        return []

    def collector(self, shapes: dict[str, tuple[int, ...]]) -> Collector:
        return Accumulator(shapes)


AGGREGATORS: Registry[type] = Registry("aggregation rule")


def make(cfg) -> AggregateRule:
    return AGGREGATORS.get(cfg.federation.aggregate)(cfg)


def divide_rows(weighted_sum: dict[str, np.ndarray], weight_sum: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Σ w·Δ / Σ w per row; rows nobody updated (Σ w = 0) stay unchanged."""
    out = {}
    for name, total in weighted_sum.items():
        w = weight_sum[name].astype(np.float64)
        scale = np.divide(1.0, w, out=np.zeros_like(w), where=w > 0)
        out[name] = (total * scale[:, None]).astype(np.float32)
    return out


from fedembed.aggregate import fedavg, rowwise  # noqa: E402,F401  (registration)
from fedembed.aggregate import krum, median, norm_bound, trimmed_mean  # noqa: E402,F401  (robust rules)
