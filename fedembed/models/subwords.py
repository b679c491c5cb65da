"""Hashed character n-grams, as fastText (and gensim's FastText) computes them.

A word is wrapped in boundary marks (`<word>`), its character n-grams for n = min_n..max_n are
hashed with fastText's FNV-1a variant over UTF-8 bytes (gensim's `ft_ngram_hashes`, so an
exported model gives the very same buckets) into a fixed number of buckets. A word's vector is
the mean over its own row and its buckets' rows; an unseen word's is the mean of its buckets'.
The bucket table has a fixed size, so it needs no vocabulary agreement.

The input side of the model is one table [V + B, D]: word rows first, then bucket rows, so a
word's subwords are row ids into it (`Subwords.flat`, CSR with `offsets`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

_CHUNK = 4096


def ngram_buckets(word: str, min_n: int, max_n: int, buckets: int) -> list[int]:
    """fastText's bucket ids of `word`'s n-grams (duplicates kept, as fastText keeps them)."""
    from gensim.models.fasttext import ft_ngram_hashes

    return [int(h) for h in ft_ngram_hashes(word, min_n, max_n, buckets)]


@dataclass(frozen=True)
class Subwords:
    """Row ids into the input table [V + B, D] of each word: its own row, then its buckets (V + b)."""
    flat: np.ndarray      # int64 [M]
    offsets: np.ndarray   # int64 [V + 1]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def subwords(words: Iterable[str], min_n: int, max_n: int, buckets: int) -> Subwords:
    words = list(words)
    v = len(words)
    rows: list[np.ndarray] = []
    for i, w in enumerate(words):
        rows.append(np.array([i] + [v + b for b in ngram_buckets(w, min_n, max_n, buckets)], dtype=np.int64))
    offsets = np.zeros(v + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    return Subwords(np.concatenate(rows) if rows else np.zeros(0, np.int64), offsets)


_CACHE: dict[tuple, Subwords] = {}


def cached_subwords(words: list[str], min_n: int, max_n: int, buckets: int) -> Subwords:
    """`subwords`, computed once per process for a vocabulary (every round, every client of a node)."""
    key = (len(words), hash("\n".join(words)), min_n, max_n, buckets)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = subwords(words, min_n, max_n, buckets)
    return _CACHE[key]


def compose(words_table: np.ndarray, buckets_table: np.ndarray, sub: Subwords) -> np.ndarray:
    """Every vocabulary word's vector: the mean of its row and its buckets' rows [V, D] (float32)."""
    v, d = words_table.shape
    table = np.concatenate([words_table, buckets_table]).astype(np.float32, copy=False)
    out = np.empty((v, d), dtype=np.float32)
    lengths = sub.lengths
    for lo in range(0, v, _CHUNK):
        hi = min(lo + _CHUNK, v)
        f0, f1 = int(sub.offsets[lo]), int(sub.offsets[hi])
        rows = table[sub.flat[f0:f1]].astype(np.float64)
        sums = np.add.reduceat(rows, sub.offsets[lo:hi] - f0, axis=0)
        out[lo:hi] = (sums / lengths[lo:hi, None]).astype(np.float32)
    return out


def unseen_vector(word: str, buckets_table: np.ndarray, min_n: int, max_n: int) -> np.ndarray:
    """An out-of-vocabulary word's vector: the mean of its buckets' rows (zeros if it has no n-gram)."""
    ids = ngram_buckets(word, min_n, max_n, len(buckets_table))
    if not ids:
        return np.zeros(buckets_table.shape[1], dtype=np.float32)
    return buckets_table[ids].astype(np.float64).mean(axis=0).astype(np.float32)
