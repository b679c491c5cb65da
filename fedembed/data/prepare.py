"""Turn a corpus into the federation's inputs: the public vocabulary and per-client shards.

The run directory's part (reuse what a previous start prepared, the preparation marker, the
privacy attacks' planted records) is here; what the rows and shards are comes from the
family's data source (fedembed/data/sources), text's in fedembed/data/text_shards.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from fedembed.config import DEVICES, Config
from fedembed.data.shards import ROWS, Manifest
from fedembed.preparing import mark_prepared, unprepared
from fedembed.vocab import Vocabulary

if TYPE_CHECKING:
    from fedembed.data.sources import DataSource



@dataclass
class Prepared:
    vocab: Vocabulary
    manifest: Manifest
    shard_dir: Path


# After the shards are written: what a run adds to them (the privacy attacks plant canaries and
# hold sentences out: fedembed/attacks/privacy/plant.py); it returns the updated manifest.
Plant = Callable[[Config, Vocabulary, Path, Path, Manifest], Manifest]


def prepare(cfg: Config, run_dir: Path, plant: Plant | None = None, source: DataSource | None = None) -> Prepared:
    """Build (or reuse, when the run directory already has them) the row index and shards with the
    family's data source (`source`; default: text); only then does the run directory count as
    holding a run (fedembed/rundir.py)."""
    prep = _prepare(cfg, run_dir, plant, source)
    mark_prepared(run_dir)
    return prep


def _prepare(cfg: Config, run_dir: Path, plant: Plant | None, source: DataSource | None) -> Prepared:
    shard_dir = run_dir / "data"
    vocab_path, manifest_path = run_dir / "vocab.tsv", shard_dir / "manifest.json"
    if vocab_path.is_file() and manifest_path.is_file() and not unprepared(run_dir):  # not a stale half
        vocab = Vocabulary.load(vocab_path)
        manifest = Manifest.load(manifest_path)
        if manifest.vocab_fingerprint == vocab.fingerprint():
            return Prepared(vocab, manifest, shard_dir)
    if source is None:
        from fedembed.data.sources import make as make_source

        source = make_source("text")
    vocab, manifest = source.build(cfg, shard_dir)
    vocab.save(vocab_path)
    vocab.save(shard_dir / ROWS)   # the row index beside the shards, for a client that needs its names
    if plant is not None and cfg.data.format != DEVICES:
        manifest = plant(cfg, vocab, run_dir, shard_dir, manifest)  # canaries, held-out sentences
    manifest.save(manifest_path)
    return Prepared(vocab, manifest, shard_dir)
