"""How well the global embeddings "predict" a sentence: the attacks' common score.

A sentence's score is the mean SGNS log-likelihood log σ(in_c · out_o) over every ordered
pair (c, o) of its words at most `window` apart — word2vec's positive-pair objective, with
no subsampling or dynamic window, so the score is deterministic. Training on a sentence
raises exactly these dot products, so its score is what memorisation moves first.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_CHUNK_PAIRS = 1 << 18


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def sentence_scores(tables: dict[str, np.ndarray], sentences: Sequence[np.ndarray], window: int,
                    max_tokens: int = 2000) -> np.ndarray:
    """[len(sentences)] mean log σ(in·out) over in-window pairs; NaN for a sentence with no pair.

    Sentences longer than `max_tokens` are scored on their first `max_tokens` words (a
    built-in "sentence" is a whole article).
    """
    w_in, w_out = tables["in_vectors"], tables["out_vectors"]
    cut = [np.asarray(s[:max_tokens], dtype=np.int64) for s in sentences]
    if not cut:
        return np.empty(0)
    ids = np.concatenate(cut)
    sent = np.repeat(np.arange(len(cut)), [len(s) for s in cut])
    centers, contexts, owners = [], [], []
    for o in range(1, window + 1):
        same = np.flatnonzero(sent[:-o] == sent[o:])
        centers += [ids[same], ids[same + o]]
        contexts += [ids[same + o], ids[same]]
        owners += [sent[same], sent[same]]
    c, x, s = (np.concatenate(v) for v in (centers, contexts, owners))
    total = np.zeros(len(cut))
    for lo in range(0, len(c), _CHUNK_PAIRS):
        hi = lo + _CHUNK_PAIRS
        dots = np.einsum("ij,ij->i", w_in[c[lo:hi]].astype(np.float64), w_out[x[lo:hi]].astype(np.float64))
        total += np.bincount(s[lo:hi], weights=log_sigmoid(dots), minlength=len(cut))
    count = np.bincount(s, minlength=len(cut))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
