"""Natural: a unit (file, JSONL client_id, built-in article) is never split.

With as many units as clients each client is one unit; with more, consecutive units are
grouped into clients of roughly equal token counts (order is kept, so neighbouring files
or articles, often on related topics, stay together: naturally non-IID).
"""
from __future__ import annotations

from fedembed.data.corpus import Document
from fedembed.data.partition import PARTITIONERS, BasePartitioner
from fedembed.errors import CorpusError


@PARTITIONERS.register("natural")
class NaturalPartitioner(BasePartitioner):
    needs_units = True

    def __init__(self, num_clients: int, seed: int, cfg=None) -> None:
        self.num_clients = num_clients
        self.client: dict[str, int] = {}

    def fit(self, unit_sizes: dict[str, int]) -> None:
        k, units = self.num_clients, list(unit_sizes)
        if len(units) < k:
            raise CorpusError(f"natural partition needs at least {k} natural units (files or client_ids), "
                              f"the corpus has {len(units)}; lower partition.num_clients or use 'iid'")
        total = sum(unit_sizes.values())
        done, client, filled = 0, 0, False
        for i, unit in enumerate(units):
            later_clients, left = k - client - 1, len(units) - i
            if filled and later_clients and (done >= total * (client + 1) / k or left == later_clients):
                client, filled = client + 1, False
            self.client[unit] = client
            filled = True
            done += unit_sizes[unit]

    def client_of(self, index: int, doc: Document) -> int:
        return self.client[doc.unit]
