"""Privacy attacks on a finished run, one per file, registered by name (`[privacy_attacks]`).

Each attack is a function `(AttackContext) -> {"figures": {...}, "details": {...}}`:
its success figures land in report.json under `privacy_attacks.<name>` (which the harness
plots), the rest under `privacy_attacks_details.<name>`; `evaluate.run_attacks` runs the
ones a scenario turns on. The data they need (planted canaries, held-out sentences) is written
at the data stage by `plant.py`. What the server received during the run reaches them through
the public observer hook (fedembed/observe.py: `evaluate.observers`); what they need of the
federation's code (replaying a client's update, masking it as SecAgg+ does) is handed to them
in `UpdateViews` by the composition root, so nothing here imports the federation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fedembed.observe import Observation
from fedembed.registry import Registry


@dataclass
class UpdateViews:
    """Ways to see one client's update, provided by the composition root (fedembed/compose.py)."""
    replay: Callable[[int], Observation]                  # client → its round-1 plain reply, replayed
    mask: Callable[[Observation, int], Observation]       # a plain reply → the masked vector SecAgg+ sends


@dataclass
class AttackContext:
    cfg: Any                          # fedembed.config.Config
    run_dir: Path
    prep: Any                         # fedembed.data.prepare.Prepared
    tables: dict[str, np.ndarray]     # the final global tables
    privacy: dict[str, Any]           # report["privacy"]: the ledger's summary
    views: UpdateViews | None = None
    seen: dict[tuple[int, int], Observation] = field(default_factory=dict)  # (round, client) → what the server got


class FirstRound:
    """An observer keeping what the server received from some clients in round 1."""

    def __init__(self, clients: set[int]) -> None:
        self.clients = clients
        self.seen: dict[tuple[int, int], Observation] = {}

    def __call__(self, rnd: int, partition: int, seen: Observation) -> None:
        if rnd == 1 and partition in self.clients:
            self.seen[(rnd, partition)] = seen


PRIVACY_ATTACKS: Registry[Callable[[AttackContext], dict[str, Any]]] = Registry("privacy attack")

