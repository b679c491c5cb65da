"""Row-wise mean: each row divided by its own weight total, so rare words are not starved.

Plain FedAvg divides a word's update by every client's weight, including clients that
never saw the word; here only the clients that updated a row share in it. Weights are
the per-row update counts (`count`, capped at `federation.max_row_weight` so that no client
outweighs the others on a row without bound, and a secure-aggregation ring stays small) or 1
for every row a client touched (`presence`).
"""
from __future__ import annotations

import numpy as np

from fedembed.aggregate import AGGREGATORS, BaseRule


@AGGREGATORS.register("rowwise")
class RowWise(BaseRule):
    def __init__(self, cfg) -> None:
        self.mode = cfg.federation.row_weight
        self.cap = cfg.federation.max_row_weight

    def client_weights(self, row_counts: dict[str, np.ndarray], examples: int) -> dict[str, np.ndarray]:
        if self.mode == "presence":
            return {k: (c > 0).astype(np.float32) for k, c in row_counts.items()}
        if self.cap > 0:
            return {k: np.minimum(c, self.cap).astype(np.float32) for k, c in row_counts.items()}
        return {k: c.astype(np.float32) for k, c in row_counts.items()}
