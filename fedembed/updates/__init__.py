"""The client's update pipeline: delta, then the stages a scenario lists, in order.

DESIGN.md's order is delta → weight → clip → noise → quantize → mask; each stage is a
small callable `ClientUpdate -> ClientUpdate`, so privacy and secure aggregation plug in
by adding stages, never by editing the ones before them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class ClientUpdate:
    tables: dict[str, np.ndarray]      # what is summed across clients (weighted deltas)
    weights: dict[str, np.ndarray]     # per-row weights, summed alongside [V]
    metrics: dict[str, float] = field(default_factory=dict)


Stage = Callable[[ClientUpdate], ClientUpdate]


@dataclass(frozen=True)
class ClientContext:
    """Who the client is and what it trained from, for stages that depend on it (an adversary
    attacks only from its own partition, and crafts its update from the global tables)."""
    partition_id: int
    round: int
    global_tables: dict[str, np.ndarray]
    counts: np.ndarray             # the public vocabulary counts sent with the round
    shard_dir: str


def delta(local: dict[str, np.ndarray], global_: dict[str, np.ndarray],
          weights: dict[str, np.ndarray]) -> ClientUpdate:
    """local − global, as float32."""
    return ClientUpdate({k: (local[k] - global_[k]).astype(np.float32, copy=False) for k in global_}, weights)


def weight_rows(update: ClientUpdate) -> ClientUpdate:
    """Multiply each row by its weight, so the server's division gives a weighted mean."""
    update.tables = {k: t * update.weights[k][:, None] for k, t in update.tables.items()}
    return update


def run_pipeline(update: ClientUpdate, stages: list[Stage]) -> ClientUpdate:
    for stage in stages:
        update = stage(update)
    return update


def stages_for(cfg, ctx: ClientContext | None = None) -> list[Stage]:
    """The stages a scenario turns on (privacy and secure aggregation add theirs here). An
    adversary's stage comes first: it crafts (Δ, weights), then the protocol's stages run on it."""
    from fedembed.aggregate.robust import rule_stages
    from fedembed.attacks.adversaries import stages as adversary_stages
    from fedembed.privacy.user_dp import client_stages  # imports this module: keep it lazy

    return [*adversary_stages(cfg, ctx), weight_rows, *rule_stages(cfg), *client_stages(cfg)]
