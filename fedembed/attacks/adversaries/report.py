"""report["attack"]: what the adversaries were and whether the targeted one worked.

Attack success is cos(A, B) and B's rank among A's nearest neighbours (1 = A's nearest word)
in the final global word vectors, next to "before" figures from clean references: the run's
own round-0 tables (recomputed from the seed; random, so near 0 and a rank deep in the list)
and, when the run trains it, the centralized gensim baseline on the same data (what the clean
data says about A and B). A run with adversary.fraction = 0 on the same scenario is the clean
federated reference a sweep compares against. Clean quality is report["quality"].
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fedembed import models
from fedembed.attacks.adversaries import NONE, boost, malicious_partitions


def neighbour_stats(vectors: np.ndarray, a: int, b: int) -> dict[str, float | int]:
    """cos(A, B) and B's rank among A's neighbours by cosine (A itself excluded; ties count for B)."""
    v = vectors.astype(np.float64)
    norms = np.linalg.norm(v, axis=1)
    sims = v @ v[a] / np.maximum(norms * norms[a], 1e-12)
    sims[a] = -np.inf
    cos = float(sims[b])
    return {"cosine": cos, "rank": int(np.sum(sims > cos)) + 1}


def attack_report(cfg, words: list[str], vectors: np.ndarray, baseline=None) -> dict[str, Any] | None:
    """None when the scenario has no adversary and names no target pair; `baseline` is the gensim
    KeyedVectors of the run's baseline, if it trained one."""
    a = cfg.adversary
    if a.attack == NONE and not (a.target and a.toward):
        return None
    mal = sorted(malicious_partitions(cfg))
    out: dict[str, Any] = {"attack": a.attack, "fraction": a.fraction, "malicious": mal,
                           "malicious_count": len(mal), "scale": boost(cfg) if mal else 0.0}
    if a.attack == "gaussian_noise" or (a.attack == "sybil" and a.sybil_base == "gaussian_noise"):
        out["noise_std"] = a.noise_std
    if a.attack == "sybil":
        out["sybil_base"] = a.sybil_base
    index = {w: i for i, w in enumerate(words)}
    if not (a.target and a.toward):
        return out
    out.update(target=a.target, toward=a.toward, strength=a.strength)
    if a.target not in index or a.toward not in index:
        out["error"] = "target or toward word not in the vocabulary"
        return out
    ia, ib = index[a.target], index[a.toward]
    family = models.make(cfg)
    initial = family.word_vectors(family.init_tables(len(words), cfg.seed), words)
    before: dict[str, Any] = {"initial": neighbour_stats(initial, ia, ib)}
    if baseline is not None and a.target in baseline.key_to_index and a.toward in baseline.key_to_index:
        kv = baseline
        before["baseline"] = neighbour_stats(kv.vectors, kv.key_to_index[a.target], kv.key_to_index[a.toward])
    out["before"] = before
    out["after"] = neighbour_stats(vectors, ia, ib)
    return out


def report_sections(cfg, words: list[str], vectors: np.ndarray, baseline=None) -> dict[str, Any]:
    """What finalize adds to report.json: "aggregation" always, "attack" when there is one."""
    from fedembed.aggregate.robust import report as aggregation_report

    out: dict[str, Any] = {"aggregation": aggregation_report(cfg)}
    attack = attack_report(cfg, words, vectors, baseline)
    if attack is not None:
        out["attack"] = attack
    return out
