"""Vocabulary inference: which words did the target client use? Read off the rows its update touches.

A client's update is zero on every row it never trained (row-wise aggregation sends
delta tables × per-row weights, and the weights), so "row r is non-zero" says "the client
used word r". The input table is the one read: its rows move only for the client's own
words (SGNS centres, CBOW contexts), while output rows also move for negative samples.
Each row is scored by the magnitude of its update (and weight); the attack predicts the
rows whose score is positive. Against a masked vector (integers mod 2^b, read as signed)
the same attack runs unchanged: a uniform mask leaves every row non-zero and every score
independent of the data, so precision falls to the base rate — chance.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fedembed.attacks.privacy import PRIVACY_ATTACKS, AttackContext
from fedembed.attacks.privacy.observe import plain_and_masked
from fedembed.attacks.privacy.roc import auc
from fedembed.data.shards import load_shard
from fedembed.observe import Observation

TABLE = "in_vectors"


def _magnitude(a: np.ndarray, ring_bits: int | None) -> np.ndarray:
    if ring_bits is None:
        return np.abs(np.asarray(a, dtype=np.float64))
    mask = np.uint64((1 << ring_bits) - 1)
    u = np.asarray(a, dtype=np.uint64) & mask
    negated = (~u + np.uint64(1)) & mask          # |x| of the elements read as negative
    return np.where(u >= np.uint64(1 << (ring_bits - 1)), negated, u).astype(np.float64)


def row_scores(obs: Observation, table: str = TABLE) -> np.ndarray:
    """[V] how much the observed update moved each row of `table` (with its weight, when sent)."""
    t = obs.tables[table]
    score = _magnitude(t, obs.ring_bits).reshape(len(t), -1).sum(axis=1)
    if table in obs.weights:
        score = score + _magnitude(obs.weights[table], obs.ring_bits)
    return score


def attack(obs: Observation, used: np.ndarray, table: str = TABLE) -> dict[str, float]:
    """Precision/recall of "the client used every word whose row is non-zero"; `used` is the truth [V]."""
    used = np.asarray(used, dtype=bool)
    scores = row_scores(obs, table)
    pred = scores > 0
    tp = int((pred & used).sum())
    return {"precision": tp / int(pred.sum()) if pred.any() else float("nan"),
            "recall": tp / int(used.sum()) if used.any() else float("nan"),
            "base_rate": float(used.mean()),   # a random guess's precision
            "auc": auc(scores[used], scores[~used])}


def counts(obs: Observation, used: np.ndarray, table: str = TABLE) -> dict[str, int]:
    return {"predicted": int((row_scores(obs, table) > 0).sum()), "used": int(np.asarray(used, bool).sum())}


def words_used(shard_dir, client: int, vocab_size: int) -> np.ndarray:
    ids, _ = load_shard(shard_dir, client)
    return np.bincount(ids, minlength=vocab_size) > 0


@PRIVACY_ATTACKS.register("vocab_inference")
def run(ctx: AttackContext) -> dict[str, Any]:
    client = ctx.cfg.privacy_attacks.target_client
    used = words_used(ctx.prep.shard_dir, client, len(ctx.prep.vocab))
    plain, view, sources = plain_and_masked(ctx, client)
    return {"figures": {"plain": attack(plain, used), "masked": attack(view, used)},
            "details": {"target_client": client, "round": 1, "mask": sources["masked"], "source": sources,
                        "table": TABLE, "plain": counts(plain, used), "masked": counts(view, used)}}
