"""Privacy attacks on a finished run, one per file, registered by name (`[privacy_attacks]`).

Each attack is a function `(AttackContext) -> {"figures": {...}, "details": {...}}`:
its success figures land in report.json under `privacy_attacks.<name>` (which the harness
plots), the rest under `privacy_attacks_details.<name>`; `evaluate.run_attacks` runs the
ones a scenario turns on. The data they need (planted canaries, held-out sentences) is written
at the data stage by `plant.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fedembed.registry import Registry


@dataclass
class AttackContext:
    cfg: Any                          # fedembed.config.Config
    run_dir: Path
    prep: Any                         # fedembed.data.prepare.Prepared
    tables: dict[str, np.ndarray]     # the final global tables
    privacy: dict[str, Any]           # report["privacy"]: the ledger's summary


PRIVACY_ATTACKS: Registry[Callable[[AttackContext], dict[str, Any]]] = Registry("privacy attack")

