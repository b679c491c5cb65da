"""Membership inference against the global embeddings: was this sentence trained on?

Members are training sentences drawn uniformly from every active client's shard (never a
planted canary); non-members were drawn the same way and removed before training
(plant.py), so both come from one distribution and only training tells them apart. Each
is scored by `scoring.sentence_scores` — a sentence the model trained on has had its
words' in·out products pushed up — and a threshold on that score is the attack.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fedembed.attacks.privacy import PRIVACY_ATTACKS, AttackContext
from fedembed.attacks.privacy.empirical_epsilon import epsilon_lower_bound
from fedembed.attacks.privacy.plant import Planted
from fedembed.attacks.privacy.roc import advantage, auc, tpr_at_fpr
from fedembed.attacks.privacy.scoring import sentence_scores
from fedembed.data.shards import load_shard
from fedembed.errors import FedembedError

LOW_FPRS = (0.01, 0.1)


def sample_members(shard_dir, clients: list[int], size: int, rng: np.random.Generator,
                   exclude: dict[int, np.ndarray] | None = None) -> list[np.ndarray]:
    """`size` training sentences of ≥ 2 tokens, uniformly over the clients' sentences."""
    pool: list[np.ndarray] = []
    for c in clients:
        ids, bounds = load_shard(shard_dir, c)
        starts = np.concatenate(([0], bounds[:-1]))
        keep = np.ones(len(bounds), dtype=bool)
        if exclude and c in exclude:
            keep[exclude[c]] = False
        keep &= (bounds - starts) >= 2
        pool += [ids[s:e] for s, e in zip(starts[keep], bounds[keep])]
    chosen = rng.choice(len(pool), size=min(size, len(pool)), replace=False)
    return [pool[i] for i in chosen]


def evaluate_scores(members: np.ndarray, non_members: np.ndarray, delta: float, confidence: float) -> dict[str, Any]:
    out: dict[str, Any] = {"auc": auc(members, non_members), "advantage": advantage(members, non_members)}
    for f in LOW_FPRS:
        out[f"tpr_at_fpr_{f:g}"] = tpr_at_fpr(members, non_members, f)
    out["epsilon_lb"] = epsilon_lower_bound(members, non_members, delta, confidence).epsilon
    return out


@PRIVACY_ATTACKS.register("membership")
def run(ctx: AttackContext) -> dict[str, Any]:
    planted = Planted.load(ctx.run_dir)
    if planted is None or len(planted.heldout_bounds) == 0:
        raise FedembedError(f"membership attack: no held-out sentences in {ctx.run_dir} (the data stage plants them "
                            f"when privacy_attacks.membership is on; prepare the run directory again)")
    cfg = ctx.cfg
    rng = np.random.default_rng([cfg.seed, 0x3E3B])
    exclude = {planted.target: planted.canary_sentences} if len(planted.canary_sentences) else None
    members = sample_members(ctx.prep.shard_dir, ctx.prep.manifest.active, cfg.privacy_attacks.members, rng, exclude)
    window = cfg.model.window
    m = sentence_scores(ctx.tables, members, window)
    n = sentence_scores(ctx.tables, planted.heldout(), window)
    m, n = m[~np.isnan(m)], n[~np.isnan(n)]
    delta, confidence = ctx.privacy.get("delta") or 0.0, cfg.privacy_attacks.confidence
    return {"figures": evaluate_scores(m, n, delta, confidence),
            "details": {"members": len(m), "non_members": len(n),
                        "epsilon_lb": epsilon_lower_bound(m, n, delta, confidence).to_dict()}}
