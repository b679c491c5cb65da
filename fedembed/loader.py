"""`fedembed.load(run_dir)`: a run's vectors, config, metrics and report as Python objects."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gensim.models import KeyedVectors

from fedembed import checkpoint, compose, config as config_mod, metrics, models
from fedembed.data.lines import one_line
from fedembed.data.shards import Manifest
from fedembed.errors import CheckpointError
from fedembed.export import keyed_vectors
from fedembed.metrics import METRICS
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
    """A run directory's parts; a missing, damaged or inconsistent part is one error naming the file."""
    run_dir = Path(run_dir)
    family, run, rnd = _open(run_dir)
    kv = keyed_vectors(run.rows.words, family.word_vectors(run.tables, run.rows.words))
    return Run(run_dir, run.cfg, rnd, kv, *_records(run_dir))


def view(run_dir: str | Path) -> tuple[models.Family, models.RunView]:
    """The run's family and what its evaluation and export see (config, rows, checkpoint's tables,
    shards), checked for consistency; an error names the file at fault."""
    family, run, _ = _open(Path(run_dir))
    _records(run.run_dir)   # a damaged metrics.jsonl or report.json is named here too
    return family, run


def _records(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    return (_json_part(run_dir / METRICS, lambda: metrics.read(run_dir)),
            _json_part(run_dir / REPORT, lambda: _report(run_dir / REPORT)))


def _open(run_dir: Path) -> tuple[models.Family, models.RunView, int]:
    if not (run_dir / CONFIG).is_file():
        raise CheckpointError(f"{run_dir} is not a fedembed run directory (no {CONFIG})")
    cfg = compose.load(run_dir / CONFIG)
    state = checkpoint.load(run_dir)
    vocab_path = run_dir / "vocab.tsv"
    vocab = Vocabulary.load(vocab_path)
    ckpt = run_dir / checkpoint.CHECKPOINT
    if state.vocab_fingerprint != vocab.fingerprint():
        raise CheckpointError(f"{ckpt} was trained on another vocabulary than {vocab_path}")
    family = models.make(cfg)
    missing = [t for t in family.tables if t not in state.tables]
    if missing:
        raise CheckpointError(f"{ckpt} has no table {missing[0]!r} (model.family = {cfg.model.family!r})")
    try:
        vectors = family.word_vectors(state.tables, vocab.words)
    except KeyError as exc:
        raise CheckpointError(f"{ckpt} has no table {exc} (model.family = {cfg.model.family!r})") from exc
    if vectors.ndim != 2 or vectors.shape[0] != len(vocab):
        raise CheckpointError(f"{ckpt}: word vectors of shape {vectors.shape}, expected {len(vocab)} rows "
                              f"(the words of {vocab_path})")
    shard_dir = run_dir / "data"
    manifest = shard_dir / "manifest.json"
    clients = Manifest.load(manifest).active if manifest.is_file() else []
    return family, models.RunView(cfg, run_dir, vocab, state.tables, shard_dir, clients, source=ckpt), state.round


def _report(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _json_part(path: Path, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or bad UTF-8
        raise CheckpointError(f"{path} is unreadable: {one_line(exc)}") from exc
