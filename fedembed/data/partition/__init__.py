"""Partitioners: which client holds which document. One per file, registered by name."""
from __future__ import annotations

from typing import Any, Protocol

from fedembed.data.corpus import Document
from fedembed.registry import Registry


class Partitioner(Protocol):
    needs_units: bool  # True when `fit` must see every natural unit's size first (a first pass)
    labeler: Any       # the labeler it partitions by (fedembed/data/partition/labels.py), or None

    def __init__(self, num_clients: int, seed: int, cfg=None) -> None: ...

    def observe(self, index: int, doc: Document) -> None: ...   # the first pass, document by document

    def fit(self, unit_sizes: dict[str, int]) -> None: ...

    def client_of(self, index: int, doc: Document) -> int: ...


class BasePartitioner:
    """What a partitioner that needs no first pass and no labels declares; others override it."""
    needs_units = False
    labeler = None

    def observe(self, index: int, doc: Document) -> None:
        pass

    def fit(self, unit_sizes: dict[str, int]) -> None:
        pass


PARTITIONERS: Registry[type] = Registry("partitioner")


def make(name: str, num_clients: int, seed: int, cfg=None) -> Partitioner:
    """`cfg` (the whole Config) for the partitioners that read more keys than the client count."""
    return PARTITIONERS.get(name)(num_clients, seed, cfg)


from fedembed.data.partition import dirichlet, iid, natural, quantity, vocab_skew  # noqa: E402,F401  (registration)
