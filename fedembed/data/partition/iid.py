"""IID: every document goes to a uniformly random client, decided as it streams past."""
from __future__ import annotations

import numpy as np

from fedembed.data.corpus import Document
from fedembed.data.partition import PARTITIONERS, BasePartitioner


@PARTITIONERS.register("iid")
class IIDPartitioner(BasePartitioner):
    needs_units = False

    def __init__(self, num_clients: int, seed: int, cfg=None) -> None:
        self.num_clients = num_clients
        self.rng = np.random.default_rng(seed)
        self._buf = np.empty(0, dtype=np.int64)
        self._pos = 0

    def client_of(self, index: int, doc: Document) -> int:
        if self._pos == len(self._buf):  # draw in blocks: one rng call per 4096 documents
            self._buf, self._pos = self.rng.integers(0, self.num_clients, size=4096), 0
        self._pos += 1
        return int(self._buf[self._pos - 1])
