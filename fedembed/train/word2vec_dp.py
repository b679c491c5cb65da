"""Record-level DP-SGD for word2vec (SGNS and CBOW) inside one client.

The unit of privacy is a sample: one sentence (line) or one document; all its skip-gram
pairs (or CBOW windows) make up that sample's loss. Each step:

1. Poisson sampling: every sample joins the batch independently with probability q.
2. The batch's pairs, with word2vec's subsampling, dynamic windows and negatives; pairs
   are grouped by sample and each sample padded to whole negative-sharing groups, so a
   group of pairs that shares its K negatives never mixes two samples.
3. The gradient pieces of the fast kernel (`sgns_grads`, no autograd), run in cache-sized
   chunks, summed into per-(sample, row) slots; from those, exact per-sample norms over
   both tables and the clipped sum (fedembed/privacy/per_sample.py), added to the tables
   once every chunk has read them. A step of more than MAX_STEP_ROWS rows runs in pieces
   of whole samples, their clipped sums gathered in a [V, D] buffer, so memory stays bounded.
4. w ← w + lr·B·(Σ_s clip_C(g_s) + N(0, σ²C²)) / B: the noisy sum divided by the expected
   batch B as in Opacus, applied with step lr·B, so train.lr keeps the meaning it has for the
   non-private trainer (one unit of summed per-pair gradient) — with C = ∞ and σ = 0 this is
   that trainer's sum-loss SGD step. The noise reaches every coordinate, touched or not, but
   is drawn lazily (fedembed/privacy/lazy_noise.py): the same distribution for far less work.

Each step is also a step of the accountant (σ, q). The sampling and the noise come from OS
entropy, never from the scenario's public seed. The public draws (subsampling, windows,
negatives) of a sample are a function of (seed, step, the sample's own tokens) alone
(fedembed/train/sample_draws.py): adding or removing a sample changes no other sample's draws,
as the DP-SGD analysis needs. Update directions are descent directions
(the kernel's sign convention); a norm does not care.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from fedembed.privacy.lazy_noise import LazyNoise
from fedembed.privacy.per_sample import RowSums, add_clipped, clip_factors, squared_norms
from fedembed.privacy.record_dp import Samples
from fedembed.privacy.record_params import DPSGDParams
from fedembed.privacy.sampling import secret_rng
from fedembed.train import sample_draws as sd
from fedembed.train.windows import cbow_windows, skipgram_pairs
from fedembed.train.word2vec import (PackedContexts, TrainStats, Word2VecParams, Word2VecTrainer, cbow_mean,
                                     pack_contexts, sgns_grads)

if TYPE_CHECKING:  # opacus takes seconds to import; the non-private path never needs it
    from opacus.accountants import IAccountant

MAX_STEP_ROWS = 1 << 18   # rows (pairs or windows) a step processes at once; more go in pieces of whole samples


def pad_to_groups(sample: np.ndarray, num_samples: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by sample: the source row of every slot once each sample is padded to whole groups.

    Returns (src, real): padding slots copy their sample's first row and have real = False
    (they contribute nothing), so no group of rows sharing negatives mixes two samples. A
    sample's gradient then depends on nothing but its own data and randomness, as the
    DP-SGD analysis needs: were groups to straddle samples, adding one sample would shift
    how every later sample's rows share their negatives.
    """
    counts = np.bincount(sample, minlength=num_samples)
    padded = -(-counts // group) * group
    starts, pstarts = np.cumsum(counts) - counts, np.cumsum(padded) - padded
    slot_sample = np.repeat(np.arange(num_samples), padded)
    rank = np.arange(int(padded.sum())) - pstarts[slot_sample]
    real = rank < counts[slot_sample]
    return starts[slot_sample] + np.where(real, rank, 0), real


@dataclass
class Batch:
    """One step's rows, grouped by sample, each sample padded to whole negative-sharing groups.

    Rows name tokens by position in `words`, so the per-(sample, row) slots can be found
    among the step's tokens (a few per pair) rather than among its pairs.
    """
    words: torch.Tensor     # [T] word id of each token of the batch (after subsampling)
    token_owner: torch.Tensor  # [T] the token's sample, 0 .. num_samples-1
    hidden: torch.Tensor    # [P] token of each center (SGNS) or [P, 2W] tokens of each context window, -1 = none (CBOW)
    target: torch.Tensor    # [P] token predicted: the context (SGNS) or the center (CBOW)
    mask: torch.Tensor      # [P] 1 for a real row, 0 for padding
    negs: torch.Tensor      # [P / G, K] negative word ids, one draw per group of G rows
    num_samples: int

    @property
    def sg(self) -> bool:
        return self.hidden.dim() == 1

    def pieces(self, cap: int) -> list[Batch]:
        """Runs of whole samples of at most `cap` rows (a larger sample alone): bounds the slots' memory."""
        if len(self.target) <= cap:
            return [self]
        bounds = torch.arange(self.num_samples + 1)
        rows = torch.searchsorted(self.token_owner[self.target], bounds).tolist()   # rows are grouped by sample
        toks = torch.searchsorted(self.token_owner, bounds).tolist()
        cuts, prev = [0], 0
        for s in range(1, self.num_samples + 1):
            if rows[s] - rows[cuts[-1]] > cap and prev > cuts[-1]:
                cuts.append(prev)
            prev = s
        cuts.append(self.num_samples)
        group = len(self.target) // len(self.negs)
        out = []
        for s0, s1 in zip(cuts[:-1], cuts[1:]):
            r0, r1, t0 = rows[s0], rows[s1], toks[s0]
            hidden = self.hidden[r0:r1]
            out.append(Batch(self.words[t0:toks[s1]], self.token_owner[t0:toks[s1]] - s0,
                             torch.where(hidden >= 0, hidden - t0, -1), self.target[r0:r1] - t0, self.mask[r0:r1],
                             self.negs[r0 // group:r1 // group], s1 - s0))
        return out


def row_sums(batch: Batch, vocab_size: int, dim: int) -> tuple[RowSums, RowSums]:
    """The (sample, row) slots of the batch's gradient on the input and on the output table.

    Input rows are tokens (centers or context words); output rows are tokens (predicted
    words) and each group's negatives, which belong to the group's sample.
    """
    tokens = (batch.token_owner, batch.words)
    group = len(batch.target) // len(batch.negs)
    group_owner = batch.token_owner[batch.target[::group]].repeat_interleave(batch.negs.shape[1])
    return (RowSums([tokens], vocab_size, dim),
            RowSums([tokens, (group_owner, batch.negs.reshape(-1))], vocab_size, dim))


def clipped_update(w_in: torch.Tensor, w_out: torch.Tensor, batch: Batch, sums: tuple[RowSums, RowSums],
                   clip: float, lr: float, chunk: int,
                   into: tuple[torch.Tensor, torch.Tensor] | None = None,
                   release_rows: int = 0) -> tuple[torch.Tensor, float]:
    """w += lr · Σ_s clip_C(g_s): the DP-SGD step without its noise; returns ‖g_s‖ [S] and the loss.

    The forward pass runs `chunk` rows at a time (a multiple of G; chunks may split a
    sample, as its slots collect all its pieces), so the gathered rows stay in cache as in
    the non-private trainer; the tables change only after every chunk has read them.
    `into` receives the sum instead of the tables (a step in several pieces). `release_rows` K > 0:
    the gradient pieces of rows K.. are zeroed before the norms (privacy.release_rows: those rows
    are neither clipped for nor released).
    """
    group, k = len(batch.target) // len(batch.negs), batch.negs.shape[1]
    chunk = max(group, chunk - chunk % group)
    ins, outs = sums
    loss = 0.0
    for lo in range(0, len(batch.target), chunk):
        hi = min(lo + chunk, len(batch.target))
        hidden, target = batch.hidden[lo:hi], batch.target[lo:hi]
        if batch.sg:
            h = torch.index_select(w_in, 0, batch.words[hidden])
        else:
            ctx = pack_contexts(hidden)     # token positions, each window's packed together
            h = cbow_mean(w_in, PackedContexts(batch.words[ctx.flat], ctx.offsets))
        g = sgns_grads(h, w_out, batch.words[target], batch.negs[lo // group:hi // group], 1.0, batch.mask[lo:hi])
        if release_rows:
            _release(g, batch, hidden, target, lo // group, hi // group, release_rows)
        if batch.sg:
            ins.add(0, hidden, g.dh)
        else:                               # every context word of a window gets the window's dh
            dh = g.dh.repeat_interleave(ctx.offsets.diff(), dim=0, output_size=len(ctx.flat))
            if release_rows:
                dh = dh * (batch.words[ctx.flat] < release_rows).unsqueeze(1).to(dh.dtype)
            ins.add(0, ctx.flat, dh)
        outs.add(0, target, g.out_pos)
        outs.add(1, slice(lo // group * k, hi // group * k), g.out_neg)
        loss += g.loss
    sq = squared_norms(sums, batch.num_samples)
    factors = clip_factors(sq, clip)
    for table, part in zip(into or (w_in, w_out), sums):
        add_clipped(table, part, factors, lr)
    return sq.sqrt(), loss


def _release(g, batch: Batch, hidden: torch.Tensor, target: torch.Tensor, g_lo: int, g_hi: int, k: int) -> None:
    """Zero, in place, the gradient pieces that land on rows k.. (in-vector rows of the centre or
    context words, out-vector rows of the targets and negatives)."""
    if batch.sg:        # CBOW: a window's dh goes to each context word; those past k are dropped when added
        g.dh.mul_((batch.words[hidden] < k).unsqueeze(1).to(g.dh.dtype))
    g.out_pos.mul_((batch.words[target] < k).unsqueeze(1).to(g.out_pos.dtype))
    g.out_neg.mul_((batch.negs[g_lo:g_hi].reshape(-1) < k).unsqueeze(1).to(g.out_neg.dtype))


class DPWord2VecTrainer(Word2VecTrainer):
    """Word2VecTrainer's tables, subsampling and negatives, trained by DP-SGD instead of plain SGD."""

    def __init__(self, in_vectors: torch.Tensor, out_vectors: torch.Tensor, counts: np.ndarray,
                 params: Word2VecParams, dp: DPSGDParams, eager_noise: bool = False,
                 max_step_rows: int = MAX_STEP_ROWS) -> None:
        super().__init__(in_vectors, out_vectors, counts, params)
        self.dp = dp
        self.eager_noise = eager_noise      # draw every step's noise on every row at once (for comparison)
        self.max_step_rows = max_step_rows
        self.noise: LazyNoise | None = None  # the last round's, for its count of draws
        self._sums: tuple[torch.Tensor, torch.Tensor] | None = None   # a step's clipped sum, when in pieces
        self._neg_prob, self._neg_alias = self.neg_prob.numpy(), self.neg_alias.numpy()

    def train_dp(self, ids: np.ndarray, samples: Samples, lr_start: float, lr_end: float, seed: int,
                 accountant: IAccountant, secret: np.random.Generator | None = None) -> TrainStats:
        """dp.steps DP-SGD steps (one round), the lr falling linearly; every step is accounted.

        `seed` (from the scenario, which anyone may read) drives only what may be public:
        subsampling, windows, negatives, each sample's from (seed, step, its tokens). Which
        samples each step takes and the noise come from `secret`, fresh OS entropy unless a
        test fixes it: with the public seed, anyone could replay the noise and subtract it.
        """
        secret = secret if secret is not None else secret_rng()
        noise = LazyNoise([self.w_in, self.w_out], torch.Generator().manual_seed(int(secret.integers(2**63))))
        self.noise = noise
        stats, dp = TrainStats(), self.dp
        for t in range(dp.steps):
            lr = lr_start + (lr_end - lr_start) * t / dp.steps
            chosen = np.flatnonzero(secret.random(len(samples)) < dp.sample_rate)
            batch = self._batch(ids, samples, chosen, sd.step_key(seed, t), stats) if len(chosen) else None
            if batch is not None:
                # w += lr·B · (Σ clip(g_s) + N(0, σ²C²)) / B  =  lr·Σ clip(g_s) + N(0, (lr·σ·C)²)
                stats.loss_sum += self._clipped_step(batch, noise, lr)
            noise.step(lr * dp.noise_multiplier * dp.clip)
            if self.eager_noise:
                noise.settle_all()
            accountant.step(noise_multiplier=dp.noise_multiplier, sample_rate=dp.sample_rate)
        noise.settle_all()
        return stats

    def _clipped_step(self, batch: Batch, noise: LazyNoise, lr: float) -> float:
        """Adds lr·Σ_s clip(g_s) to the tables, piece by piece when the batch is large; returns the loss."""
        v, d = self.w_in.shape
        pieces = batch.pieces(self.max_step_rows)
        if len(pieces) > 1 and self._sums is None:
            self._sums = (torch.zeros_like(self.w_in), torch.zeros_like(self.w_out))
        into = self._sums if len(pieces) > 1 else None
        loss = 0.0
        for piece in pieces:
            sums = row_sums(piece, v, d)
            for table, s in enumerate(sums):      # rows about to be read get the noise they are owed
                noise.settle(table, _unique_rows(s.row, v))
            loss += clipped_update(self.w_in, self.w_out, piece, sums, self.dp.clip, lr, self.p.batch_size, into)[1]
        for w, acc in zip((self.w_in, self.w_out), into or ()):
            rows = acc.any(1).nonzero().squeeze(1)
            w.index_add_(0, rows, acc[rows])
            acc[rows] = 0
        return loss

    def _batch(self, ids, samples: Samples, chosen, key: np.uint64, stats: TrainStats) -> Batch | None:
        """The chosen samples' pairs (SGNS) or windows (CBOW), grouped by sample and padded; None if empty.

        Every draw is indexed by its sample and its place in the sample (token position, or
        group number for negatives), under the sample's key for this step (`key` ⊕ its digest).
        """
        n = len(chosen)
        tokens, sent, sample = samples.gather(chosen)
        stats.words += len(tokens)
        words = ids[tokens]
        keys = sd.sample_keys(key, sd.sample_digests(words, sample, n))
        pos = sd.positions(sample, n)               # a token's place in its sample, before subsampling
        keep = sd.uniform(sd.draws(keys, sd.SUBSAMPLE, sample, pos)) < self.keep[words]
        kept, sent, sample, pos = words[keep], sent[keep], sample[keep], pos[keep]
        reach = 1 + sd.below(sd.draws(keys, sd.WINDOW, sample, pos), self.p.window)
        local = np.arange(len(kept))
        if self.p.sg:
            hidden, target = skipgram_pairs(local, sent, self.p.window, None, reach)
            key16 = sample[hidden].astype(np.uint16 if n < 2**16 else np.int64)  # uint16: a radix sort
            order = np.argsort(key16, kind="stable")             # pairs grouped by sample
            hidden, target = hidden[order], target[order]
        else:
            target, hidden = cbow_windows(local, sent, self.p.window, None, reach)   # token order: grouped by sample
        if len(target) == 0:
            return None
        src, real = pad_to_groups(sample[target], n, self.p.neg_share)
        stats.examples += int(real.sum())
        hidden = hidden[src]
        if not self.p.sg:
            hidden[~real] = -1  # a padding window reads no context: its mean is 0, its masked error goes nowhere
        target = target[src]
        negs = self._sample_negatives(keys, sample[target[::self.p.neg_share]], n)   # a group's sample
        return Batch(torch.from_numpy(kept.astype(np.int64)), torch.from_numpy(sample), torch.from_numpy(hidden),
                     torch.from_numpy(target), torch.from_numpy(real.astype(np.float32)), negs, n)

    def _sample_negatives(self, keys: np.ndarray, group_owner: np.ndarray, num_samples: int) -> torch.Tensor:
        """[groups, K] negatives by the alias method; draw k of a sample's group g is number g·K + k of its stream."""
        k = self.p.negative
        owner = np.repeat(group_owner, k)
        index = sd.positions(group_owner, num_samples).repeat(k) * k + np.tile(np.arange(k), len(group_owner))
        col = sd.below(sd.draws(keys, sd.NEG_COLUMN, owner, index), len(self._neg_prob))
        coin = sd.uniform(sd.draws(keys, sd.NEG_COIN, owner, index))
        negs = np.where(coin < self._neg_prob[col], col, self._neg_alias[col])
        return torch.from_numpy(negs).view(-1, k)


def _unique_rows(rows: torch.Tensor, vocab_size: int) -> torch.Tensor:
    mark = torch.zeros(vocab_size, dtype=torch.bool)
    mark[rows] = True
    return mark.nonzero().squeeze(1)
