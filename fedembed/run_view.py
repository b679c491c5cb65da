"""What a family's training returns and what its evaluation sees: plain records, no family code.

Kept apart from fedembed/models (the registry, which imports every family) so that the
evaluation modules a family calls (fedembed/eval/*) can name these records without importing
the registry back; fedembed.models re-exports them for the families.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fedembed.config import Config
    from fedembed.vocab import Vocabulary


@dataclass
class LocalResult:
    tables: dict[str, np.ndarray]       # the locally trained tables
    row_counts: dict[str, np.ndarray]   # per table, how often each row was updated [rows of that table]
    loss: float
    examples: int
    words: int                          # units of data read (tokens, interactions, walk steps)


@dataclass
class RunView:
    """What a family's evaluation, report and export see of a run (never a client's private state)."""
    cfg: Config
    run_dir: Path | None
    rows: Vocabulary                    # the row index: words, items or nodes
    tables: dict[str, np.ndarray]       # the global tables
    shard_dir: Path | None = None       # the clients' shards (None: on the devices, or not kept)
    clients: list[int] = field(default_factory=list)   # the clients that trained (the manifest's active)
    source: Path | None = None          # what errors name for the tables (e.g. the checkpoint)


@dataclass
class FamilyReport:
    """The family's part of report.json: `quality`, and per centralized baseline its figures
    (report["baseline"][name]) with `ratio_to_baseline` (federated ÷ centralized)."""
    quality: dict[str, Any]
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: dict[str, float | None] = field(default_factory=dict)
    headline: dict[str, float | None] = field(default_factory=dict)   # a few figures for the CLI and summary.csv
    reference: Any = None               # the main baseline's vectors (gensim KeyedVectors), for the adversary report
    files: list[Path] = field(default_factory=list)   # what it exported into the run directory
