"""Cross-device cohorts: many users' FedSGD updates in one vectorised step, each clipped exactly.

With 10⁵ users and thousands of them a round, one Flower message per user (~60 ms each) is
more than the training costs. Under `train.mode = "fedsgd"` a user's update is one full-batch
gradient step at the global tables, Δ_u = lr·g_u (FedSGD), and a pool node (`simulation.nodes`)
computes every sampled user it hosts in one pass: each user is one *sample* of the per-sample
machinery record-level DP-SGD uses (fedembed/privacy/per_sample.py: exact per-sample norms
over the rows a sample touched, never a [users, V, D] tensor), its Δ_u clipped to C when the
run is user-level private (∞ otherwise), and only the sum — with, per row, how many users
touched it — leaves the node.

A user's draws (frequent-word subsampling, dynamic windows, negatives) come from (the round's
seed, the user's own tokens) through fedembed/train/sample_draws.py, never from a stream shared
with the other users, so a user's Δ_u is the same whether it is computed alone or in a cohort
of thousands: the cohort's sum is what training the users one by one gives
(tests/test_cohort.py checks both, in isolation and through whole federations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from fedembed.privacy.record_dp import Samples
from fedembed.privacy.record_params import DPSGDParams
from fedembed.train import sample_draws as sd
from fedembed.train.word2vec import TrainStats, Word2VecParams
from fedembed.train.word2vec_dp import MAX_STEP_ROWS, DPWord2VecTrainer, clipped_update, row_sums


@dataclass
class CohortSum:
    """The cohort's summed update, per table, and how many users touched each row."""
    sums: dict[str, np.ndarray]           # Σ_u clip_C(Δ_u), float32 [V, D]
    presence: dict[str, np.ndarray]       # per row: users whose Δ touched it [V]
    users: int
    norms: np.ndarray = field(default_factory=lambda: np.zeros(0))   # ‖Δ_u‖ before clipping
    stats: TrainStats = field(default_factory=TrainStats)


def stack(users: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The users' token ids and sentence ends as one shard, and each sentence's user (the sample)."""
    ids, bounds, owner, offset = [], [], [], 0
    for u, (i, b) in enumerate(users):
        ids.append(np.asarray(i, dtype=np.int32))
        bounds.append(np.asarray(b, dtype=np.int64) + offset)
        owner.append(np.full(len(b), u, dtype=np.int64))
        offset += len(i)
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dtype=dt))
    return cat(ids, np.int32), cat(bounds, np.int64), cat(owner, np.int64)


def cohort_step(tables: dict[str, np.ndarray], users: list[tuple[np.ndarray, np.ndarray]], counts: np.ndarray,
                params: Word2VecParams, lr: float, clip: float, seed: int,
                max_step_rows: int = MAX_STEP_ROWS, release_rows: int = 0) -> CohortSum:
    """Σ_u clip_C(lr·g_u) over `users` [(ids, sentence ends)], g_u each user's summed SGNS/CBOW
    gradient at `tables` (word2vec's in/out vectors, left unchanged). `clip` ∞: no clipping.
    `release_rows` K > 0: g_u's rows K.. are zeroed before its norm (privacy.release_rows)."""
    w_in = torch.as_tensor(tables["in_vectors"], dtype=torch.float32)
    w_out = torch.as_tensor(tables["out_vectors"], dtype=torch.float32)
    v, d = w_in.shape
    out = CohortSum({"in_vectors": np.zeros((v, d), np.float32), "out_vectors": np.zeros((v, d), np.float32)},
                    {"in_vectors": np.zeros(v), "out_vectors": np.zeros(v)}, len(users))
    ids, bounds, owner = stack(users)
    if not len(users) or not len(ids):
        return out
    grad_clip = clip / lr if math.isfinite(clip) else math.inf       # ‖lr·g‖ ≤ C  ⇔  ‖g‖ ≤ C/lr
    dp = DPSGDParams(1.0, grad_clip, 0.0, float(len(users)), 1, 1e-6, "rdp")
    trainer = DPWord2VecTrainer(w_in, w_out, counts, params, dp, max_step_rows=max_step_rows)
    samples = Samples(bounds, owner)
    batch = trainer._batch(ids, samples, np.arange(len(samples)), sd.step_key(seed, 0), out.stats)
    if batch is None:
        return out
    into = (torch.zeros_like(w_in), torch.zeros_like(w_out))
    norms = torch.zeros(len(users), dtype=torch.float64)
    first = 0
    for piece in batch.pieces(max_step_rows):
        sums = row_sums(piece, v, d)
        for name, s in zip(("in_vectors", "out_vectors"), sums):   # distinct (user, row) slots: presence
            np.add.at(out.presence[name], s.row.numpy(), 1.0)
        g_norms, loss = clipped_update(w_in, w_out, piece, sums, grad_clip, lr, params.batch_size, into,
                                       release_rows=release_rows)
        norms[first:first + piece.num_samples] = g_norms * lr
        first += piece.num_samples
        out.stats.loss_sum += loss
    out.sums = {"in_vectors": into[0].numpy(), "out_vectors": into[1].numpy()}
    out.norms = norms.numpy()
    return out
