"""The public hook through which attacks (and anything else) see what the server receives.

The round loop calls every registered `ReplyObserver` with each accepted client reply, as the
server holds it: float tables and weights on the plain path, the masked ring vector (split
into its tables and weights) under SecAgg+. An attack that wants "what the server saw"
registers an observer through the composition root instead of importing the federation's
modules and rebuilding its message formats; what it captured reaches it after the run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Observation:
    """One client's reply as the server holds it: floats, or integers in Z_{2^ring_bits} (masked)."""
    tables: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    ring_bits: int | None = None


class ReplyObserver(Protocol):
    def __call__(self, rnd: int, partition: int, seen: Observation) -> None: ...


class Observers:
    """The run's observers; the round loop calls `reply` for each accepted update."""

    def __init__(self, observers: list[ReplyObserver] | None = None) -> None:
        self.observers = list(observers or [])

    def __bool__(self) -> bool:
        return bool(self.observers)

    def reply(self, rnd: int, partition: int, seen: Observation) -> None:
        for observe in self.observers:
            observe(rnd, partition, seen)
