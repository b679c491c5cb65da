"""Vocabulary skew: documents with similar vocabularies go to the same client.

Documents are clustered by their words (the deterministic TF-IDF topic model of labels.py,
one cluster per client up to 64; beyond, clients share a cluster round-robin). A document
goes to its cluster's client with probability `partition.vocab_skew`, else to a uniformly
random one, so clients' vocabularies overlap only partly: 0 is IID, 1 the strongest skew.
"""
from __future__ import annotations

import numpy as np

from fedembed.config import Config
from fedembed.data.corpus import Document
from fedembed.data.partition import PARTITIONERS, BasePartitioner
from fedembed.data.partition.labels import TopicModel

_MAX_CLUSTERS = 64


@PARTITIONERS.register("vocab_skew")
class VocabSkewPartitioner(BasePartitioner):
    needs_units = True

    def __init__(self, num_clients: int, seed: int, cfg: Config | None = None) -> None:
        cfg = cfg or Config()
        self.num_clients, self.skew = num_clients, cfg.partition.vocab_skew
        self.groups = min(num_clients, _MAX_CLUSTERS)
        self.model = TopicModel(self.groups, seed + 1)
        self.rng = np.random.default_rng([seed, 0x5C])

    def observe(self, i: int, doc: Document) -> None:
        self.model.observe(doc)

    def fit(self, unit_sizes: dict[str, int]) -> None:
        self.model.fit()

    def client_of(self, index: int, doc: Document) -> int:
        u, spread = self.rng.random(), int(self.rng.integers(self.num_clients))
        if u >= self.skew:
            return spread
        g = self.model.predict(doc)
        members = range(g, self.num_clients, self.groups)  # the clients that hold cluster g
        return members[spread % len(members)]
