"""Turn a corpus into the federation's inputs: the public vocabulary and per-client shards.

The run directory's part (reuse what a previous start prepared, the preparation marker, the
privacy attacks' planted records) is here; what the rows and shards are comes from the
family's data source (fedembed/data/sources), text's being `build_vocab` and `write_shards` below.

Streams the corpus (twice when the partitioner needs unit sizes first), so memory stays
bounded by the shard writer's buffers whatever the corpus size.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from fedembed import vocab as vocab_mod
from fedembed.config import DEVICES, Config
from fedembed.data.corpus import BUILTIN, read_corpus
from fedembed.data.partition import make as make_partitioner, stats as partition_stats
from fedembed.data.shards import ROWS, Manifest, ShardWriter
from fedembed.errors import CorpusError
from fedembed.preparing import mark_prepared, unprepared
from fedembed.vocab import Vocabulary

if TYPE_CHECKING:
    from fedembed.data.sources import DataSource

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    vocab: Vocabulary
    manifest: Manifest
    shard_dir: Path


def build_vocab(cfg: Config) -> Vocabulary:
    v = cfg.vocab
    if v.source == BUILTIN:
        return vocab_mod.from_corpus(BUILTIN, BUILTIN, v.min_count, v.max_size)
    return vocab_mod.from_word_list(Path(v.source), v.min_count, v.max_size)


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


def write_shards(cfg: Config, vocab: Vocabulary, shard_dir: Path) -> Manifest:
    k = cfg.partition.num_clients
    part = make_partitioner(cfg.partition.name, k, cfg.seed, cfg)
    collector = partition_stats.Collector(cfg, part)  # sizes and label histograms (data/partition_stats.json)
    if part.needs_units or collector.needs_pass:
        sizes: Counter[str] = Counter()
        for i, doc in enumerate(read_corpus(cfg.data.corpus, cfg.data.format)):
            sizes[doc.unit] += len(doc.tokens)
            collector.observe(i, doc)  # the partitioner's and the labels' first pass
        part.fit(dict(sizes))
    writer = ShardWriter(shard_dir, k)
    for i, doc in enumerate(read_corpus(cfg.data.corpus, cfg.data.format)):
        client, ids = part.client_of(i, doc), vocab.encode(doc.tokens)
        writer.append(client, ids, doc.unit)
        collector.add(i, doc, client, len(ids))
    stats = writer.close()
    skipped = [c for c in range(k) if stats.tokens[c] < cfg.partition.min_tokens]
    if len(skipped) == k:
        raise CorpusError(f"no client has at least {cfg.partition.min_tokens} in-vocabulary tokens "
                          f"(corpus {cfg.data.corpus}, vocabulary of {len(vocab)} words from {cfg.vocab.source})")
    for c in skipped:
        log.warning("client %d has %d in-vocabulary tokens (< partition.min_tokens=%d): skipped",
                    c, stats.tokens[c], cfg.partition.min_tokens)
    manifest = Manifest(k, vocab.fingerprint(), stats.tokens, stats.sentences, stats.units, skipped)
    log.info("partition %s: %d clients, tokens per client min %d / median %d / max %d", cfg.partition.name, k,
             min(stats.tokens), sorted(stats.tokens)[k // 2], max(stats.tokens))
    collector.write(manifest, shard_dir)
    return manifest
