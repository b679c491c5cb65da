"""A device's own data: it trains on its own raw text, never on a server-written shard.

Where a simulated client reads the token shard the server's prepare step wrote, a device
has only its own corpus. The vocabulary is public (built deterministically from the source
the scenario names, or from a copy of that word list on the device), and the server sends
its word counts in every train message, so the device builds the vocabulary itself, checks
it is the server's (same words count and the same counts, row by row), and tokenizes its
corpus into a local shard, streaming: documents are read line by line and the shard writer
flushes every 2^20 tokens, so memory while tokenizing is bounded whatever the corpus size.
The shard is cached (keyed by corpus identity, vocabulary settings and the server's counts),
so later rounds go straight to training (also under `flower-supernode`, where every round is a
fresh ClientApp process).

Node config / environment the ClientApp reads (`fedembed client` sets them):
  data-path               a shard directory (`client_<id>.ids`) or a raw corpus (file or directory)
  FEDEMBED_EDGE_CACHE     where local shards go (default ~/.cache/fedembed/edge)
  FEDEMBED_VOCAB_SOURCE   a local copy of the public word list, when the scenario's
                          `vocab.source` is a path that exists only on the server

Used by the client's round (fedembed/federation/client.py) wherever it runs: simulation (the
server's shards), a deployed node, a device (`fedembed client`, fedembed/deploy/).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from fedembed.config import DEVICES
from fedembed.data.shards import ROWS, ShardWriter, shard_paths
from fedembed.errors import ConfigError, CorpusError
from fedembed.nodelog import report
from fedembed.signals import default_signal_handlers

CACHE_ENV, VOCAB_ENV = "FEDEMBED_EDGE_CACHE", "FEDEMBED_VOCAB_SOURCE"
_DONE = "shard.json"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fedembed" / "edge").expanduser()


def is_shard_dir(path: Path, partition_id: int) -> bool:
    return path.is_dir() and shard_paths(path, partition_id)[0].is_file()


def local_data(data_path: str | None, server_shard_dir: str, cfg, counts: np.ndarray,
               partition_id: int, fingerprint: str = "") -> tuple[Path, int]:
    """(shard directory, client index in it) for this round.

    No `data-path`: the server's shard directory (simulation, or a SuperNode on the server's
    machine). A shard directory: that. Anything else is this device's raw corpus.
    """
    if not data_path:
        if not server_shard_dir:
            raise CorpusError("the scenario keeps the data on the devices (data.format = \"devices\") and this "
                              "node has none: start it with its corpus (`fedembed client --data PATH`, or "
                              "node config data-path)")
        return Path(server_shard_dir), partition_id
    path = Path(data_path).expanduser()
    if is_shard_dir(path, partition_id):
        return path, partition_id
    if not path.exists():
        raise CorpusError(f"data-path does not exist on this node: {path}")
    return local_shard(path, cfg, counts, fingerprint), 0


def _vocab_source(cfg) -> str:
    from fedembed.data.corpus import BUILTIN

    override = os.environ.get(VOCAB_ENV)
    if override:
        return str(Path(override).expanduser().resolve())
    source = cfg.vocab.source
    if source != BUILTIN and not Path(source).is_file():
        raise ConfigError(f"the scenario's vocabulary source {source!r} is not on this device: give a local copy "
                          f"of the public word list (`fedembed client --vocab FILE`, or {VOCAB_ENV})")
    return source if source == BUILTIN else str(Path(source).resolve())


def _identity(path: Path) -> str:
    """Path, size and mtime of the corpus (every file of a directory): changes when the data does."""
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256(str(path.resolve()).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def local_shard(corpus: Path, cfg, counts: np.ndarray, fingerprint: str = "") -> Path:
    """This device's shard of `corpus` under the server's vocabulary (built once, then cached);
    `fingerprint`, when the server sends one, must be that of the vocabulary built here."""
    # Imported here: the tokenizer builds its Unicode tables at import, a cost every round's
    # fresh ClientApp process would otherwise pay even when the shard is already cached.
    from fedembed.data.corpus import read_corpus

    source = _vocab_source(cfg)
    fmt = "auto" if cfg.data.format == DEVICES else cfg.data.format  # "devices": whatever this device holds
    key = hashlib.sha256(json.dumps([_identity(corpus), source, cfg.vocab.min_count, cfg.vocab.max_size,
                                     fmt, hashlib.sha256(np.ascontiguousarray(counts, dtype=np.int64)
                                                                     .tobytes()).hexdigest(), fingerprint]).encode())
    directory = cache_root() / key.hexdigest()[:20]
    done = directory / _DONE
    if done.is_file():
        return directory
    vocab = _public_vocab(cfg, source, counts, fingerprint)
    directory.mkdir(parents=True, exist_ok=True)
    vocab.save(directory / ROWS)
    writer = ShardWriter(directory, 1)
    for doc in read_corpus(corpus, fmt):
        writer.append(0, vocab.encode(doc.tokens), doc.unit)
    stats = writer.close()
    if stats.tokens[0] == 0:
        raise CorpusError(f"{corpus} has no word of the federation's vocabulary ({len(vocab)} words)")
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps({"corpus": str(corpus.resolve()), "vocab_fingerprint": vocab.fingerprint(),
                               "tokens": stats.tokens[0], "sentences": stats.sentences[0]}))
    tmp.replace(done)
    report(f"fedembed edge: tokenized {corpus} into {stats.tokens[0]} tokens / {stats.sentences[0]} sentences "
           f"in {directory} (vocabulary {vocab.fingerprint()})")
    return directory


def _public_vocab(cfg, source: str, counts: np.ndarray, fingerprint: str = ""):
    """Build the public vocabulary here and refuse it unless it is the server's: row by row
    (counts), then words and counts together (the server's fingerprint)."""
    from fedembed.data.text_shards import build_vocab

    with default_signal_handlers():
        vocab = build_vocab(replace(cfg, vocab=replace(cfg.vocab, source=source)))
    server = np.asarray(counts, dtype=np.int64)
    if len(vocab) != len(server) or not np.array_equal(vocab.counts, server):
        first = next((i for i in range(min(len(vocab), len(server))) if vocab.counts[i] != server[i]), None)
        raise ConfigError(f"this device's vocabulary (from {source}: {len(vocab)} words) is not the server's "
                          f"({len(server)} words" + (f"; counts differ from row {first}" if first is not None else "")
                          + "): use the same public word list and vocab settings as the server")
    if fingerprint and vocab.fingerprint() != fingerprint:
        raise ConfigError(f"this device's vocabulary (from {source}) has the server's counts but not its words "
                          f"(fingerprint {vocab.fingerprint()}, server {fingerprint}): use the same public word list")
    return vocab
