"""Batched word2vec training (SGNS and CBOW with negative sampling) in PyTorch.

Gradients are written out by hand and applied with `index_add_`, which is the SGD step
autograd would take on the summed batch loss (a test checks this against autograd),
without building a graph or dense gradients of the [V, D] tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from fedembed.train.windows import cbow_windows, sentence_ids, skipgram_pairs, subsample
from fedembed.vocab import alias_table, keep_probabilities

_CHUNK_TOKENS = 65536


@dataclass(frozen=True)
class Word2VecParams:
    sg: bool = True
    window: int = 5
    negative: int = 5
    sample: float = 1e-3
    ns_exponent: float = 0.75
    batch_size: int = 1024
    neg_share: int = 32   # consecutive rows sharing one draw of K negatives

    def __post_init__(self) -> None:
        if self.batch_size % self.neg_share:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of neg_share {self.neg_share}")


@dataclass
class TrainStats:
    loss_sum: float = 0.0
    examples: int = 0
    words: int = 0

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.examples, 1)


class Word2VecTrainer:
    """Trains `in_vectors`/`out_vectors` in place and counts how often each row was updated."""

    def __init__(self, in_vectors: torch.Tensor, out_vectors: torch.Tensor, counts: np.ndarray,
                 params: Word2VecParams) -> None:
        self.w_in, self.w_out, self.p = in_vectors, out_vectors, params
        self.keep = keep_probabilities(counts, params.sample)
        self.neg_prob, self.neg_alias = (torch.from_numpy(a) for a in alias_table(counts, params.ns_exponent))
        v = len(counts)
        self.in_counts = torch.zeros(v, dtype=torch.float64)
        self.out_counts = torch.zeros(v, dtype=torch.float64)

    def train(self, ids: np.ndarray, bounds: np.ndarray, epochs: int, lr_start: float, lr_end: float,
              seed: int) -> TrainStats:
        """`epochs` passes over one shard, the learning rate falling linearly from lr_start to lr_end."""
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        sent = sentence_ids(bounds)
        total = max(len(ids) * epochs, 1)
        stats = TrainStats()
        for _ in range(epochs):
            for lo in range(0, len(ids), _CHUNK_TOKENS):
                hi = min(lo + _CHUNK_TOKENS, len(ids))
                lr = lr_start + (lr_end - lr_start) * (stats.words / total)
                lr_next = lr_start + (lr_end - lr_start) * ((stats.words + hi - lo) / total)
                c_ids, c_sent = subsample(ids[lo:hi], sent[lo:hi], self.keep, rng)
                if self.p.sg:
                    self._sgns_chunk(c_ids, c_sent, lr, lr_next, rng, gen, stats)
                else:
                    self._cbow_chunk(c_ids, c_sent, lr, lr_next, rng, gen, stats)
                stats.words += hi - lo
        return stats

    def _negatives(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """[n / share, K] draws by Walker's alias method: O(1) each, exact unigram^0.75."""
        m = (n // self.p.neg_share) * self.p.negative
        col = torch.randint(0, len(self.neg_prob), (m,), generator=gen)
        coin = torch.rand(m, generator=gen)
        return torch.where(coin < self.neg_prob[col], col, self.neg_alias[col]).view(-1, self.p.negative)

    def _schedule(self, n: int, lr: float, lr_next: float) -> list[tuple[int, int, float]]:
        """Batches of whole negative-sharing groups; the ragged tail (< neg_share rows) is dropped."""
        b, g = self.p.batch_size, self.p.neg_share
        n = n - n % g
        steps = (n + b - 1) // b
        return [(s * b, min((s + 1) * b, n), lr + (lr_next - lr) * s / max(steps, 1)) for s in range(steps)]

    def _count(self, in_rows: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor) -> None:
        """Per-row update counts: the weights of row-wise aggregation (each table by its own rows:
        fastText's input table also holds its n-gram buckets)."""
        v = len(self.out_counts)
        self.in_counts += torch.bincount(in_rows, minlength=len(self.in_counts))
        self.out_counts += torch.bincount(pos, minlength=v)
        self.out_counts += torch.bincount(negs.reshape(-1), minlength=v) * self.p.neg_share

    def _sgns_update(self, centers: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, a: float) -> float:
        """One skip-gram step on these pairs; counts the rows it moved; returns the summed loss.
        A centre's hidden vector is its input row (fastText: the mean of its subword rows)."""
        loss = sgns_step(self.w_in, self.w_out, centers, pos, negs, a)
        self._count(centers, pos, negs)
        return loss

    def _sgns_chunk(self, ids, sent, lr, lr_next, rng, gen, stats) -> None:
        centers, contexts = skipgram_pairs(ids, sent, self.p.window, rng)
        if len(centers) == 0:
            return
        order = torch.from_numpy(rng.permutation(len(centers)))
        centers = torch.from_numpy(centers.astype(np.int64))[order]
        contexts = torch.from_numpy(contexts.astype(np.int64))[order]
        for lo, hi, a in self._schedule(len(centers), lr, lr_next):
            pos, negs = contexts[lo:hi], self._negatives(hi - lo, gen)
            stats.loss_sum += self._sgns_update(centers[lo:hi], pos, negs, a)
            stats.examples += hi - lo

    def _cbow_chunk(self, ids, sent, lr, lr_next, rng, gen, stats) -> None:
        centers, ctx = cbow_windows(ids, sent, self.p.window, rng)
        if len(centers) == 0:
            return
        order = rng.permutation(len(centers))
        centers_t = torch.from_numpy(centers[order])
        packed = pack_contexts(torch.from_numpy(ctx[order]))
        for lo, hi, a in self._schedule(len(centers_t), lr, lr_next):
            c, pos, negs = packed.rows(lo, hi), centers_t[lo:hi], self._negatives(hi - lo, gen)
            stats.loss_sum += cbow_step(self.w_in, self.w_out, c, pos, negs, a)
            stats.examples += hi - lo
            self._count(c.flat, pos, negs)


class SGNSGrads(NamedTuple):
    """One batch's SGNS gradient pieces, as descent directions already scaled by lr."""
    dh: torch.Tensor        # [B, D] for the hidden rows h
    out_pos: torch.Tensor   # [B, D] for the output rows `pos`
    out_neg: torch.Tensor   # [B/G * K, D] for the output rows `negs.reshape(-1)`
    loss: float


def sgns_grads(h: torch.Tensor, w_out: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, lr: float,
               mask: torch.Tensor | None = None) -> SGNSGrads:
    """h [B,D] predicts pos [B] against negs [B/G, K], each drawn once for G consecutive rows.

    Every row still sees K i.i.d. noise words, so its loss is word2vec's; sharing the draw
    turns the negative terms into small matrix products instead of B*K gathers and dot
    products, which is what makes a CPU step fast. `mask` [B] (0 = padding row) lets
    DP-SGD pad each sample to whole groups; the plain step passes None. Reads `w_out` only:
    the plain step adds the pieces itself, DP-SGD clips them per sample first.
    """
    b, d = h.shape
    groups, k = negs.shape
    u_pos = torch.index_select(w_out, 0, pos)                                  # B, D
    u_neg = torch.index_select(w_out, 0, negs.reshape(-1)).view(groups, k, d)  # B/G, K, D
    hg = h.view(groups, b // groups, d)                                        # B/G, G, D
    s_pos = (u_pos * h).sum(1)                                                 # B
    s_neg = torch.bmm(hg, u_neg.transpose(1, 2))                               # B/G, G, K
    l_pos = torch.nn.functional.softplus(-s_pos)
    l_neg = torch.nn.functional.softplus(s_neg)
    g_pos = (1.0 - torch.sigmoid(s_pos)) * lr
    g_neg = torch.sigmoid(s_neg).mul_(-lr)
    if mask is not None:
        group_mask = mask.view(groups, b // groups, 1)
        g_pos.mul_(mask)
        g_neg.mul_(group_mask)
        l_pos.mul_(mask)
        l_neg.mul_(group_mask)
    dh = g_pos.unsqueeze(1) * u_pos + torch.bmm(g_neg, u_neg).view(b, d)
    out_neg = torch.bmm(g_neg.transpose(1, 2), hg).reshape(-1, d)
    return SGNSGrads(dh, g_pos.unsqueeze(1) * h, out_neg, (l_pos.sum() + l_neg.sum()).item())


def _sgns_core(h: torch.Tensor, w_out: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor,
               lr: float) -> tuple[torch.Tensor, float]:
    """Updates `w_out` in place; returns dh (already scaled by lr, descent direction) and the loss sum."""
    g = sgns_grads(h, w_out, pos, negs, lr)
    w_out.index_add_(0, pos, g.out_pos)
    w_out.index_add_(0, negs.reshape(-1), g.out_neg)
    return g.dh, g.loss


def sgns_step(w_in: torch.Tensor, w_out: torch.Tensor, centers: torch.Tensor, pos: torch.Tensor,
              negs: torch.Tensor, lr: float) -> float:
    """One SGD step on the batch's summed SGNS loss -log σ(u_pos·v) - Σ log σ(-u_neg·v)."""
    h = torch.index_select(w_in, 0, centers)
    dh, loss = _sgns_core(h, w_out, pos, negs, lr)
    w_in.index_add_(0, centers, dh)
    return loss


class PackedContexts(NamedTuple):
    """CBOW contexts without padding: row i's context ids are flat[offsets[i]:offsets[i + 1]].

    Why: with word2vec's dynamic window a center uses on average about 3 of its 2·window slots,
    so a padded [B, 2·window, D] block gathers, masks and scatters mostly padding."""
    flat: torch.Tensor     # [M] int64
    offsets: torch.Tensor  # [N + 1] int64, offsets[0] = 0

    def rows(self, lo: int, hi: int) -> PackedContexts:
        f0, f1 = int(self.offsets[lo]), int(self.offsets[hi])
        return PackedContexts(self.flat[f0:f1], self.offsets[lo:hi + 1] - f0)


def pack_contexts(ctx: torch.Tensor) -> PackedContexts:
    """From contexts padded with -1 ([N, 2·window]). A row with none (DP-SGD's padding windows)
    packs to nothing: its mean is 0 and it scatters nowhere."""
    valid = ctx >= 0
    offsets = torch.zeros(len(ctx) + 1, dtype=torch.int64)
    torch.cumsum(valid.sum(1), 0, out=offsets[1:])
    return PackedContexts(ctx[valid], offsets)


def cbow_mean(w_in: torch.Tensor, ctx: PackedContexts) -> torch.Tensor:
    """CBOW's hidden rows [B, D]: the mean of each row's context vectors."""
    return torch.nn.functional.embedding_bag(ctx.flat, w_in, ctx.offsets[:-1], mode="mean")


def cbow_step(w_in: torch.Tensor, w_out: torch.Tensor, ctx: PackedContexts, pos: torch.Tensor,
                     negs: torch.Tensor, lr: float) -> float:
    """CBOW (mean of context vectors); like word2vec.c, every context word receives the full
    error of the mean."""
    h = cbow_mean(w_in, ctx)
    dh, loss = _sgns_core(h, w_out, pos, negs, lr)
    w_in.index_add_(0, ctx.flat, dh.repeat_interleave(ctx.offsets.diff(), dim=0, output_size=len(ctx.flat)))
    return loss
