"""The simulated clients' own words: what each would hold on its device, before any vocabulary exists.

Why: in `public` mode a client's shard is token ids in the public vocabulary, which discovery
cannot use (the words it must find are those no public list has). So a discovered run first
writes each client's text as ids into a *local* word list of every corpus word — the
simulation's stand-in for the text on the devices, partitioned exactly as training's shards
will be (same partitioner, seed and corpus order). Only the clients read it: the server
passes its directory on, as it passes the training shards' (`shard_dir`), and never opens it.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from fedembed.data.shards import Manifest, load_shard

WORDS = "words.tsv"           # every corpus word: the local ids' names
MANIFEST = "manifest.json"


def directory(run_dir: Path) -> Path:
    return Path(run_dir) / "discovery" / "clients"


def prepare(cfg, run_dir: Path) -> tuple[Path, Manifest]:
    """Write (or reuse) every client's text as local ids; returns the directory and its manifest."""
    from fedembed import vocab as vocab_mod
    from fedembed.data.text_shards import write_shards

    out = directory(run_dir)
    if (out / MANIFEST).is_file() and (out / WORDS).is_file():
        return out, Manifest.load(out / MANIFEST)
    out.mkdir(parents=True, exist_ok=True)
    words = vocab_mod.from_corpus(cfg.data.corpus, cfg.data.format, min_count=1)
    words.save(out / WORDS)
    manifest = write_shards(cfg, words, out)
    manifest.save(out / MANIFEST)         # last: its presence means the directory is complete
    return out, manifest


@functools.lru_cache(maxsize=4)
def _names(words_dir: str) -> tuple[str, ...]:
    from fedembed.vocab import Vocabulary

    return tuple(Vocabulary.load(Path(words_dir) / WORDS).words)


def client_words(words_dir: str | Path, partition: int) -> list[str]:
    """The distinct words partition `partition` holds (read on the client, each round)."""
    ids, _ = load_shard(Path(words_dir), partition)
    names = _names(str(words_dir))
    return [names[i] for i in np.unique(ids).tolist()]
