"""The centralized reference: gensim Word2Vec on the same tokens, vocabulary and hyperparameters.

It reads the very shards the clients train on (decoded back to words) and builds its
vocabulary from the same public counts, so the only difference left is federation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from gensim.models import KeyedVectors, Word2Vec

from fedembed.data.shards import load_shard


MAX_WORDS = 10_000


def baseline_epochs(cfg, active_clients: int) -> int:
    """Centralized epochs matching the federation's passes over the data: rounds × local
    epochs × the fraction of clients a round trains (all of them unless clients_per_round)."""
    per_round = cfg.federation.clients_per_round or active_clients
    return max(1, round(cfg.federation.rounds * cfg.train.local_epochs * min(per_round, active_clients)
                        / max(active_clients, 1)))


class ShardSentences:
    """Re-iterable sentences of words over every client's shard (gensim iterates once per epoch)."""

    def __init__(self, shard_dir: Path, clients: list[int], words: list[str]) -> None:
        self.dir, self.clients = shard_dir, clients
        self.words = np.array(words, dtype=object)

    def __iter__(self) -> Iterator[list[str]]:
        for k in self.clients:
            ids, bounds = load_shard(self.dir, k)
            start = 0
            for end in bounds.tolist():
                # gensim silently drops words past 10,000 in one sentence: cut long documents
                for lo in range(start, end, MAX_WORDS):
                    yield self.words[ids[lo:min(lo + MAX_WORDS, end)]].tolist()
                start = end


def train_gensim(cfg, vocab, shard_dir: Path, clients: list[int], workers: int = 1) -> KeyedVectors:
    m, t = cfg.model, cfg.train
    model = Word2Vec(vector_size=m.dim, window=m.window, negative=m.negative, sample=m.sample,
                     ns_exponent=m.ns_exponent, sg=1 if m.family == "sgns" else 0, hs=0,
                     alpha=t.lr, min_alpha=t.min_lr, min_count=1, seed=cfg.seed, workers=workers)
    model.build_vocab_from_freq(dict(zip(vocab.words, vocab.counts.tolist())))
    sentences = ShardSentences(shard_dir, clients, vocab.words)
    total_words = int(sum(len(load_shard(shard_dir, k)[0]) for k in clients))
    model.train(sentences, total_words=total_words,
                epochs=baseline_epochs(cfg, len(clients)))
    return model.wv
