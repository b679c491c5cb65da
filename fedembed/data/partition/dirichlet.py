"""Dirichlet label skew (Hsu et al. 2019): each label's documents spread over clients by Dir(α).

For every label c (`partition.label`: document source, topic cluster, unit or a JSON Lines
field) a client mix p_c ~ Dir(α·1) is drawn; each document of label c then goes to client k
with probability p_c[k]. Small α gives clients few labels each; α → ∞ is IID. Draws are
seeded, so the same seed gives the same partition.
"""
from __future__ import annotations

import logging

import numpy as np

from fedembed.config import Config
from fedembed.data.corpus import Document
from fedembed.data.partition import PARTITIONERS, BasePartitioner, labels

log = logging.getLogger(__name__)
_RETRIES = 100


@PARTITIONERS.register("dirichlet")
class DirichletPartitioner(BasePartitioner):
    needs_units = True

    def __init__(self, num_clients: int, seed: int, cfg: Config | None = None) -> None:
        cfg = cfg or Config()
        self.num_clients, self.alpha = num_clients, cfg.partition.alpha
        self.labeler = labels.make(cfg)
        self.rng = np.random.default_rng([seed, 0xD1])
        self.cum: np.ndarray | None = None
        self._u, self._pos = np.empty(0), 0

    def observe(self, i: int, doc: Document) -> None:
        self.labeler.observe(i, doc)

    def fit(self, unit_sizes: dict[str, int]) -> None:
        counts = self.labeler.counts().astype(float)
        k = self.num_clients
        for _ in range(_RETRIES):  # redraw mixes that leave a client with no document in expectation
            mix = self.rng.dirichlet(np.full(k, self.alpha), size=max(len(counts), 1))
            mix = np.nan_to_num(mix, nan=1.0 / k)  # tiny α underflows to 0/0: any one-hot is as good
            if counts.sum() < k or (counts @ mix[:len(counts)]).min() >= 1.0:
                break
        else:
            log.warning("dirichlet: with alpha=%g some clients expect no document; they may be skipped", self.alpha)
        mix /= mix.sum(axis=1, keepdims=True)
        self.cum = np.cumsum(mix, axis=1)

    def client_of(self, index: int, doc: Document) -> int:
        assert self.cum is not None, "fit() first"
        c = self.labeler.label(index, doc)
        if c >= len(self.cum):  # a label the first pass did not see: spread it evenly
            return int(self.rng.integers(self.num_clients))
        if self._pos == len(self._u):
            self._u, self._pos = self.rng.random(4096), 0
        self._pos += 1
        return min(int(np.searchsorted(self.cum[c], self._u[self._pos - 1], side="right")), self.num_clients - 1)
