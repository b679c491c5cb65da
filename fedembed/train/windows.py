"""Vectorised word2vec context windows: subsampling, dynamic windows, pairs.

Loops run over window offsets (at most 2*window of them), never over tokens or pairs.
"""
from __future__ import annotations

import numpy as np


def sentence_ids(bounds: np.ndarray) -> np.ndarray:
    """Sentence index of every token, from the sentences' end offsets."""
    lengths = np.diff(np.concatenate(([0], bounds)))
    return np.repeat(np.arange(len(bounds), dtype=np.int64), lengths)


def subsample(ids: np.ndarray, sent: np.ndarray, keep_prob: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Drop frequent tokens before windowing, so the window reaches further (as word2vec does)."""
    keep = rng.random(len(ids), dtype=np.float32) < keep_prob[ids]
    return ids[keep], sent[keep]


def _reach(n: int, window: int, rng: np.random.Generator | None, reach: np.ndarray | None) -> np.ndarray:
    """Each center's dynamic window b in 1..window: drawn from `rng`, or given (DP-SGD draws its own per sample)."""
    return reach if reach is not None else rng.integers(1, window + 1, size=n)


def skipgram_pairs(ids: np.ndarray, sent: np.ndarray, window: int, rng: np.random.Generator | None,
                   reach: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(center, context) pairs with word2vec's dynamic window: each center draws b in 1..window."""
    n = len(ids)
    reach = _reach(n, window, rng, reach)
    centers: list[np.ndarray] = []
    contexts: list[np.ndarray] = []
    for o in range(1, min(window, n - 1) + 1):
        same = sent[:-o] == sent[o:]
        fwd = np.flatnonzero(same & (reach[:-o] >= o))          # center i, context i+o
        bwd = np.flatnonzero(same & (reach[o:] >= o)) + o       # center i, context i-o
        centers += [ids[fwd], ids[bwd]]
        contexts += [ids[fwd + o], ids[bwd - o]]
    if not centers:
        empty = np.empty(0, dtype=ids.dtype)
        return empty, empty
    return np.concatenate(centers), np.concatenate(contexts)


def cbow_windows(ids: np.ndarray, sent: np.ndarray, window: int, rng: np.random.Generator | None,
                 reach: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centers and their context ids [N, 2*window], padded with -1; centers without context dropped."""
    n = len(ids)
    reach = _reach(n, window, rng, reach)
    ctx = np.full((n, 2 * window), -1, dtype=np.int64)
    for o in range(1, min(window, n - 1) + 1):
        same = sent[:-o] == sent[o:]
        fwd = np.flatnonzero(same & (reach[:-o] >= o))
        ctx[fwd, 2 * (o - 1)] = ids[fwd + o]
        bwd = np.flatnonzero(same & (reach[o:] >= o)) + o
        ctx[bwd, 2 * (o - 1) + 1] = ids[bwd - o]
    has = (ctx >= 0).any(axis=1)
    return ids[has].astype(np.int64), ctx[has]
