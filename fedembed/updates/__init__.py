"""The client's update and the stages it goes through before it is sent.

A client trains, takes its delta (local − global) and hands it to a list of stages, in the
order DESIGN.md gives: adversary (simulation only) → row weights → robust-rule preparation →
clip → noise share → quantize → mask. Each stage is a small object `ClientUpdate ->
ClientUpdate` with a `describe()` line, so privacy and secure aggregation plug in by adding
stages, never by editing the ones before them, and a scenario's pipeline can be printed
(`fedembed simulate --dry-run`). Which stages a scenario gets is decided in one place,
`fedembed.compose`; this module only defines the shapes they share, and imports no domain.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class ClientUpdate:
    tables: dict[str, np.ndarray]      # what is summed across clients (weighted deltas)
    weights: dict[str, np.ndarray]     # per-row weights, summed alongside [V]
    metrics: dict[str, float] = field(default_factory=dict)
    vector: np.ndarray | None = None   # the flat wire form, once a transport stage has flattened it


@runtime_checkable
class Stage(Protocol):
    """One step of the pipeline. `describe()` is the line `--dry-run` prints for it."""

    def __call__(self, update: ClientUpdate) -> ClientUpdate: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ClientContext:
    """Who the client is and what it trained from, for stages that depend on it (an adversary
    attacks only from its own partition, and crafts its update from the global tables).
    `partition_id` is None when a pipeline is only being described (`--dry-run`)."""
    partition_id: int | None
    round: int
    global_tables: dict[str, np.ndarray]
    counts: np.ndarray             # the public vocabulary counts sent with the round
    shard_dir: str


def delta(local: dict[str, np.ndarray], global_: dict[str, np.ndarray],
          weights: dict[str, np.ndarray]) -> ClientUpdate:
    """local − global, as float32."""
    return ClientUpdate({k: (local[k] - global_[k]).astype(np.float32, copy=False) for k in global_}, weights)


class WeightRows:
    """Multiply each row by its weight, so the server's division gives a weighted mean."""

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        update.tables = {k: t * update.weights[k][:, None] for k, t in update.tables.items()}
        return update

    def describe(self) -> str:
        return "row weights: each row of the delta times its weight (the server divides row by row)"


weight_rows = WeightRows()


def run_pipeline(update: ClientUpdate, stages: list[Stage]) -> ClientUpdate:
    for stage in stages:
        update = stage(update)
    return update
