"""Retrieval quality of sentence vectors: each anchor ranks every positive; the right one's rank.

recall@k is the share of anchors whose own positive is among their k nearest positives by
cosine (vectors are normalised, so the dot product); MRR the mean of 1/rank. Ties count
against the right answer (its rank is 1 + the number of positives scoring at least as high,
itself excluded), so a constant model scores 0, not 1.
"""
from __future__ import annotations

import numpy as np


def ranks(anchors: np.ndarray, positives: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """[n] 1-based rank of positive i among all positives for anchor i."""
    a, p = np.asarray(anchors, np.float32), np.asarray(positives, np.float32)
    out = np.empty(len(a), dtype=np.int64)
    for lo in range(0, len(a), chunk):
        s = a[lo:lo + chunk] @ p.T
        own = s[np.arange(len(s)), np.arange(lo, lo + len(s))]
        out[lo:lo + len(s)] = (s >= own[:, None]).sum(1)   # includes itself: rank ≥ 1
    return out


def retrieval(anchors: np.ndarray, positives: np.ndarray) -> dict[str, float]:
    r = ranks(anchors, positives)
    return {"recall@1": float((r <= 1).mean()), "recall@10": float((r <= 10).mean()),
            "mrr": float((1.0 / r).mean()), "pairs": int(len(r))}
