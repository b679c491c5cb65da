"""The targeted attacks' words A and B as rows of the public vocabulary, and the poisoned row.

The vocabulary is public (vocab.mode = "public"), so an attacker knows it: the run directory's
copy when simulated clients share it (shard_dir/../vocab.tsv), else rebuilt from the public
source (cached: it is the same every round).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from fedembed.errors import ConfigError

POISONED = "in_vectors"  # the word vectors (word_vectors() of SGNS/CBOW); out_vectors are left honest


@lru_cache(maxsize=4)
def _vocab_index(vocab_file: str, source: str, min_count: int, max_size: int) -> tuple[dict[str, int], int]:
    from fedembed.vocab import Vocabulary

    if vocab_file:
        v = Vocabulary.load(Path(vocab_file))
    else:
        from fedembed.data.text_shards import build_vocab
        from types import SimpleNamespace

        v = build_vocab(SimpleNamespace(vocab=SimpleNamespace(source=source, min_count=min_count,
                                                              max_size=max_size)))
    return v.index, len(v)


def word_rows(cfg, ctx) -> tuple[int, int]:
    """Rows of adversary.target (A) and adversary.toward (B); refuses words not in the vocabulary."""
    candidate = Path(ctx.shard_dir).parent / "vocab.tsv" if ctx.shard_dir else None
    vocab_file = str(candidate) if candidate is not None and candidate.is_file() else ""
    v = cfg.vocab
    index, size = _vocab_index(vocab_file, v.source, v.min_count, v.max_size)
    if size != len(ctx.counts):
        raise ConfigError(f"the attacker's vocabulary has {size} words, the round's tables {len(ctx.counts)}")
    rows = []
    for key in ("target", "toward"):
        word = getattr(cfg.adversary, key)
        if word not in index:
            raise ConfigError(f"adversary.{key}: {word!r} is not in the vocabulary")
        rows.append(index[word])
    return rows[0], rows[1]


def poisoned_row(cfg, ctx, factor: float) -> tuple[int, np.ndarray]:
    """A's row and the Δ that moves it `strength` of the way to B, times `factor` (the boost)."""
    a, b = word_rows(cfg, ctx)
    g = ctx.global_tables[POISONED]
    step = cfg.adversary.strength * (g[b].astype(np.float64) - g[a].astype(np.float64))
    return a, (factor * step).astype(np.float32)
