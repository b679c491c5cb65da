"""Fidelity to centralized training: do the frequent words have the same nearest neighbours?

WordSim353 and SimLex999 score a few hundred pairs, many of rare words, so under DP noise
their Spearman ρ is within its own sampling error (±0.04) of zero and cannot tell two weak
models apart. `neighbour_overlap` asks instead how much of the private data's structure the
model learned: for the most frequent words (the ones with enough signal to learn), the share
of their k nearest neighbours that gensim, trained centrally without noise on the same data,
also puts in the top k. 1.0 is the reference's structure exactly; independent random vectors
score about k/(n − 1), n the words both sides share.
"""
from __future__ import annotations

import numpy as np

_BLOCK_BYTES = 64 << 20          # one similarity block: queries × candidates float32


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)   # a zero row stays zero: cosine 0 to all


def top_k_neighbours(unit: np.ndarray, queries: np.ndarray, k: int,
                     block_bytes: int = _BLOCK_BYTES) -> np.ndarray:
    """[len(queries), k] row indices of each query row's k highest-cosine rows of `unit`
    (rows already unit length), the query itself excluded. Computed a block of queries at a
    time, so memory is O(block_bytes + n·D), never n × n."""
    n = len(unit)
    rows = max(1, block_bytes // (4 * max(n, 1)))
    out = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), rows):
        q = queries[lo:lo + rows]
        sims = unit[q] @ unit.T                                # [b, n]
        sims[np.arange(len(q)), q] = -np.inf                   # not its own neighbour
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out[lo:lo + len(q)] = part
    return out


def neighbour_overlap(words: list[str], vectors: np.ndarray, reference_kv, counts: np.ndarray,
                      top: int = 1000, k: int = 10, block_bytes: int = _BLOCK_BYTES) -> float:
    """Mean |N_k(w) ∩ N_k^ref(w)| / k over the `top` most frequent words w.

    `words`, `vectors` [V, D] and `counts` [V]: the model's vocabulary, word vectors and word
    counts (frequency decides which words are asked). `reference_kv`: gensim KeyedVectors of
    the reference (gensim trained centrally on the same data). Neighbours are by cosine,
    excluding the word itself, searched among the words both sides have (so neither side is
    judged on words the other cannot name); ties in frequency go to the earlier word."""
    vectors = np.asarray(vectors)
    counts = np.asarray(counts)
    if vectors.ndim != 2 or len(vectors) != len(words) or len(counts) != len(words):
        raise ValueError(f"neighbour_overlap: words ({len(words)}), vectors {vectors.shape} and counts "
                         f"{counts.shape} must have one row per word")
    if top < 1 or k < 1:
        raise ValueError(f"neighbour_overlap: top ({top}) and k ({k}) must be >= 1")
    ref_index = reference_kv.key_to_index
    shared = [i for i, w in enumerate(words) if w in ref_index]
    if len(shared) <= k:
        raise ValueError(f"neighbour_overlap: only {len(shared)} words are shared with the reference; "
                         f"k = {k} neighbours need at least {k + 1}")
    mine = _unit_rows(vectors[shared])
    ref = _unit_rows(reference_kv.vectors[[ref_index[words[i]] for i in shared]])
    by_freq = np.argsort(-counts[shared], kind="stable")      # positions in `shared`, most frequent first
    queries = by_freq[:top]
    a = top_k_neighbours(mine, queries, k, block_bytes)
    b = top_k_neighbours(ref, queries, k, block_bytes)
    hits = sum(len(np.intersect1d(x, y, assume_unique=True)) for x, y in zip(a, b))
    return float(hits / (k * len(queries)))
