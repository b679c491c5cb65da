"""How good node vectors are: node classification (micro/macro F1) and link prediction (AUC).

Node classification, as in the node2vec paper: a one-vs-rest logistic regression on the
vectors, trained on a fixed, stratified share of the labelled nodes and scored on the rest.
Link prediction: held-out edges against as many non-edges (fedembed/graph/holdout.py),
scored by the cosine of the two ends' vectors, summarised by the ROC AUC. Both are computed
the same way for federated and central vectors, so their ratio is the federation's cost.
"""
from __future__ import annotations

import numpy as np


def node_classification(vectors: np.ndarray, labels: dict[int, str], train_fraction: float = 0.5,
                        seed: int = 0, min_class: int = 2) -> dict[str, float]:
    """Micro and macro F1 of a logistic regression on `vectors[node]` → label.

    Classes with fewer than `min_class` nodes are left out (a stratified split needs one on
    each side)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    nodes = np.array(sorted(labels), dtype=np.int64)
    y = np.array([labels[n] for n in nodes.tolist()])
    names, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, names[counts >= min_class])
    nodes, y = nodes[keep], y[keep]
    if len(np.unique(y)) < 2:
        raise ValueError("node classification needs at least two classes with two nodes each")
    x = vectors[nodes].astype(np.float64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, train_size=train_fraction, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(max_iter=1000).fit(scaler.transform(x_tr), y_tr)
    pred = clf.predict(scaler.transform(x_te))
    return {"micro_f1": float(f1_score(y_te, pred, average="micro")),
            "macro_f1": float(f1_score(y_te, pred, average="macro")),
            "classes": int(len(np.unique(y))), "test_nodes": int(len(y_te))}


def cosine_scores(vectors: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    a, b = vectors[pairs[:, 0]].astype(np.float64), vectors[pairs[:, 1]].astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.where(den > 0, den, 1.0)


def auc(pos_scores: np.ndarray, neg_scores: np.ndarray) -> float:
    """ROC AUC: the probability that a random positive outscores a random negative (ties ½)."""
    from scipy.stats import rankdata

    scores = np.concatenate((pos_scores, neg_scores))
    ranks = rankdata(scores)
    n_pos, n_neg = len(pos_scores), len(neg_scores)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def link_prediction(vectors: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> dict[str, float]:
    return {"auc": auc(cosine_scores(vectors, pos), cosine_scores(vectors, neg)), "pairs": int(len(pos))}
