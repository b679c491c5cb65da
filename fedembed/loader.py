"""`fedembed.load(run_dir)`: a run's vectors, config, metrics and report as Python objects."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gensim.models import KeyedVectors

from fedembed import checkpoint, compose, config as config_mod, metrics, models
from fedembed.errors import CheckpointError
from fedembed.export import keyed_vectors
from fedembed.report import REPORT
from fedembed.rundir import CONFIG
from fedembed.vocab import Vocabulary


@dataclass
class Run:
    path: Path
    config: config_mod.Config
    round: int
    vectors: KeyedVectors
    metrics: list[dict[str, Any]]
    report: dict[str, Any] | None


def load(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise CheckpointError(f"{run_dir} is not a fedembed run directory (no {CONFIG})")
    cfg = compose.load(run_dir / CONFIG)
    state = checkpoint.load(run_dir)
    vocab = Vocabulary.load(run_dir / "vocab.tsv")
    kv = keyed_vectors(vocab.words, models.make(cfg).word_vectors(state.tables))
    report_path = run_dir / REPORT
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    return Run(run_dir, cfg, state.round, kv, metrics.read(run_dir), report)
