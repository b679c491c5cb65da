"""Quantity skew: client sizes (in tokens) follow a log-normal distribution, content stays IID.

Client k's share is e^{X_k} / Σ e^{X_j} with X ~ N(0, σ²) (`partition.sigma`; 0 = equal). The
documents, in a seeded random order, are cut into consecutive runs whose token counts meet
those shares, so each client's text is an IID sample and only the amounts differ. Every
client gets at least one document while there are enough.
"""
from __future__ import annotations

import numpy as np

from fedembed.config import Config
from fedembed.data.corpus import Document
from fedembed.data.partition import PARTITIONERS, BasePartitioner


@PARTITIONERS.register("quantity")
class QuantityPartitioner(BasePartitioner):
    needs_units = True

    def __init__(self, num_clients: int, seed: int, cfg: Config | None = None) -> None:
        cfg = cfg or Config()
        self.num_clients, self.sigma = num_clients, cfg.partition.sigma
        self.rng = np.random.default_rng([seed, 0x9A])
        self._lengths: list[int] = []
        self.shares: np.ndarray | None = None
        self.assign: np.ndarray | None = None

    def observe(self, i: int, doc: Document) -> None:
        self._lengths.append(len(doc.tokens))

    def fit(self, unit_sizes: dict[str, int]) -> None:
        k, lengths = self.num_clients, np.array(self._lengths, dtype=np.int64)
        x = self.rng.normal(0.0, self.sigma, size=k)
        self.shares = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
        order = self.rng.permutation(len(lengths))
        ends = np.cumsum(lengths[order])
        mid = (ends - lengths[order] / 2) / max(ends[-1], 1) if len(ends) else ends
        client = np.minimum(np.searchsorted(np.cumsum(self.shares), mid, side="right"), k - 1)
        if len(order) >= k:  # an empty client takes one document from the fullest
            per = np.bincount(client, minlength=k)
            for c in np.flatnonzero(per == 0):
                donor = int(np.argmax(per))
                j = np.flatnonzero(client == donor)[-1]
                client[j], per[donor], per[c] = c, per[donor] - 1, 1
        self.assign = np.empty(len(order), dtype=np.int32)
        self.assign[order] = client

    def client_of(self, index: int, doc: Document) -> int:
        assert self.assign is not None, "fit() first"
        return int(self.assign[index])
