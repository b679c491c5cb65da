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


def make(name: str, num_clients: int, seed: int, cfg=None) -> Partitioner:
    """`cfg` (the whole Config) reaches partitioners that read more keys (`takes_config = True`)."""
    cls = PARTITIONERS.get(name)
    return cls(num_clients, seed, cfg) if getattr(cls, "takes_config", False) else cls(num_clients, seed)


from fedembed.data.partition import dirichlet, iid, natural, quantity, vocab_skew  # noqa: E402,F401  (registration)
