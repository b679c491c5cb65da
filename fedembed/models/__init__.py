"""Embedding families: what the global state is and how a client trains it locally.

One family per file, registered by name (the scenario's `model.family`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fedembed.registry import Registry

if TYPE_CHECKING:
    from fedembed.privacy.record_dp import PrivateTraining


@dataclass
class LocalResult:
    tables: dict[str, np.ndarray]       # the locally trained tables
    row_counts: dict[str, np.ndarray]   # per table, how often each row was updated [V]
    loss: float
    examples: int
    words: int


class Family(Protocol):
    tables: tuple[str, ...]

    def init_tables(self, vocab_size: int, seed: int) -> dict[str, np.ndarray]: ...

    def train_local(self, tables: dict[str, np.ndarray], ids: np.ndarray, bounds: np.ndarray,
                    counts: np.ndarray, lr_start: float, lr_end: float, seed: int,
                    private: PrivateTraining | None = None) -> LocalResult: ...  # None: plain SGD

    def word_vectors(self, tables: dict[str, np.ndarray]) -> np.ndarray: ...


FAMILIES: Registry[type] = Registry("model family")


def make(cfg) -> Family:  # cfg: fedembed.config.Config
    return FAMILIES.get(cfg.model.family)(cfg)


from fedembed.models import cbow, sgns  # noqa: E402,F401  (registration)
