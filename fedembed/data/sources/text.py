"""Text: a corpus (fedembed/data/corpus.py) → the public vocabulary → per-client token shards.

The shards are int32 token ids with sentence ends (fedembed/data/shards.py); a client reads
them back as a `TextShard`. Under `data.format = "devices"` the server writes no shards: each
node tokenizes its own corpus (fedembed/data/device.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from fedembed.data.sources import SOURCES


class TextShard(NamedTuple):
    ids: np.ndarray      # int32 token ids
    bounds: np.ndarray   # int64 sentence end offsets


@SOURCES.register("text")
class TextSource:
    kind = "text"

    def check(self, cfg) -> None:
        """Text's keys beyond config.check's: `vocab.holdout`."""
        from fedembed.errors import ConfigError

        from fedembed.data.ratings_io import FORMATS

        if cfg.data.format in FORMATS and cfg.data.format != "jsonl":
            raise ConfigError(f"data.format = {cfg.data.format!r} is a ratings format; model.family = "
                              f"{cfg.model.family!r} trains on text")
        if not 0.0 <= cfg.vocab.holdout < 1.0:
            raise ConfigError(f"vocab.holdout must be in [0, 1), got {cfg.vocab.holdout}")

    def build(self, cfg, shard_dir: Path):
        from fedembed.config import DEVICES
        from fedembed.data.text_shards import build_vocab, write_shards
        from fedembed.data.shards import Manifest

        vocab = build_vocab(cfg)
        if cfg.data.format == DEVICES:  # every node brings its own corpus: no shards here, sizes unknown
            shard_dir.mkdir(parents=True, exist_ok=True)
            k = cfg.partition.num_clients
            return vocab, Manifest(k, vocab.fingerprint(), [0] * k, [0] * k, [0] * k)
        return vocab, write_shards(cfg, vocab, shard_dir)

    def load(self, shard_dir: Path, client: int) -> TextShard:
        from fedembed.data.shards import load_shard

        return TextShard(*load_shard(shard_dir, client))
