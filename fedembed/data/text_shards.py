"""The text kind's inputs: the public vocabulary, and each client's token shard of the corpus.

Streams the corpus (twice when the partitioner needs unit sizes first), so memory stays
bounded by the shard writer's buffers whatever the corpus size. Called by the text data
source (fedembed/data/sources/text.py), and by a device building its own shard.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from fedembed import vocab as vocab_mod
from fedembed.config import Config
from fedembed.data.corpus import BUILTIN, read_corpus
from fedembed.data.partition import make as make_partitioner, stats as partition_stats
from fedembed.data.shards import Manifest, ShardWriter
from fedembed.errors import CorpusError
from fedembed.vocab import Vocabulary

log = logging.getLogger(__name__)


def build_vocab(cfg: Config) -> Vocabulary:
    v = cfg.vocab
    if v.source == BUILTIN:
        vocab = vocab_mod.from_corpus(BUILTIN, BUILTIN, v.min_count, v.max_size)
    else:
        vocab = vocab_mod.from_word_list(Path(v.source), v.min_count, v.max_size)
    if v.holdout > 0:  # the out-of-vocabulary test's words: never in any shard (fedembed/data/holdout.py)
        from fedembed.data.holdout import held_out_of

        out = held_out_of(cfg)
        keep = [i for i, w in enumerate(vocab.words) if w not in out]
        vocab = Vocabulary([vocab.words[i] for i in keep], vocab.counts[keep])
    return vocab


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
