"""Aggregation rules, one per file, registered by name (`federation.aggregate`).

rowwise and fedavg are weighted means, Σ_k w_k·Δ_k / Σ_k w_k taken row by row, so that the
server only needs two sums (which secure aggregation can give it): the client multiplies
its delta by its weights (`client_weights`, a client-side stage) and the server divides.
The robust rules (median, trimmed_mean, krum, multi_krum, norm_bound) bring a `collector`
the server folds replies into instead, and say whether they compose with secure aggregation.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from fedembed.registry import Registry


class AggregateRule(Protocol):
    def client_weights(self, row_counts: dict[str, np.ndarray], examples: int) -> dict[str, np.ndarray]: ...


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


def collector(cfg, shapes: dict[str, tuple[int, ...]]):
    """The round's sink for replies: running sums for a weighted mean, the rule's own collector
    (same add/count/sums/weights interface) for rules that need each update (fedembed/aggregate/robust.py)."""
    from fedembed.aggregate.accumulate import Accumulator

    rule = make(cfg)
    return rule.collector(shapes) if hasattr(rule, "collector") else Accumulator(shapes)


from fedembed.aggregate import fedavg, rowwise  # noqa: E402,F401  (registration)
from fedembed.aggregate import krum, median, norm_bound, trimmed_mean  # noqa: E402,F401  (robust rules)
