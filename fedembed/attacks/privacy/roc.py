"""Threshold attacks' figures from two samples of scores (higher = "member")."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting ½ (Mann-Whitney U / (n·m))."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def roc_points(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of "score ≥ t" for every t among the scores, from (0, 0) up to (1, 1)."""
    pos, neg = np.sort(np.asarray(pos, float)), np.sort(np.asarray(neg, float))
    t = np.unique(np.concatenate([pos, neg]))[::-1]
    tpr = (len(pos) - np.searchsorted(pos, t, side="left")) / max(len(pos), 1)
    fpr = (len(neg) - np.searchsorted(neg, t, side="left")) / max(len(neg), 1)
    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], tpr))


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, max_fpr: float) -> float:
    """The best TPR among thresholds whose FPR is at most `max_fpr`."""
    fpr, tpr = roc_points(pos, neg)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def advantage(pos: np.ndarray, neg: np.ndarray) -> float:
    """max over thresholds of TPR − FPR (Yeom et al.'s membership advantage)."""
    fpr, tpr = roc_points(pos, neg)
    return float((tpr - fpr).max())
