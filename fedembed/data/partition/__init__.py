"""Partitioners: which client holds which document. One per file, registered by name."""
from __future__ import annotations

from typing import Protocol

from fedembed.data.corpus import Document
from fedembed.registry import Registry


class Partitioner(Protocol):
    needs_units: bool  # True when `fit` must see every natural unit's size first (a first pass)

    def fit(self, unit_sizes: dict[str, int]) -> None: ...

    def client_of(self, index: int, doc: Document) -> int: ...


PARTITIONERS: Registry[type] = Registry("partitioner")


def make(name: str, num_clients: int, seed: int) -> Partitioner:
    return PARTITIONERS.get(name)(num_clients, seed)


from fedembed.data.partition import iid, natural  # noqa: E402,F401  (registration)
