"""Subword skip-gram with negative sampling (Bojanowski et al. 2017), batched in PyTorch.

word2vec's SGNS (fedembed/train/word2vec.py: subsampling, dynamic window, unigram^0.75
negatives, linear learning-rate decay) with one change: the center word's hidden vector is the
mean of its input rows — its own row and its hashed n-gram buckets' rows, one table [V + B, D] —
and, as in fastText and gensim, every one of those rows receives the full gradient of the mean
(CBOW's step with the center's subwords as its "context", `cbow_step`).
"""
from __future__ import annotations

import numpy as np
import torch

from fedembed.models.subwords import Subwords
from fedembed.train.windows import skipgram_pairs
from fedembed.train.word2vec import PackedContexts, Word2VecParams, Word2VecTrainer, cbow_step


class FastTextTrainer(Word2VecTrainer):
    """Trains the input table [V + B, D] and `out_vectors` [V, D] in place; counts updates per row
    of both (`in_counts` over V + B: word rows, then buckets)."""

    def __init__(self, inputs: torch.Tensor, out_vectors: torch.Tensor, counts: np.ndarray,
                 params: Word2VecParams, sub: Subwords) -> None:
        if not params.sg:
            raise ValueError("the subword family trains skip-gram only")
        super().__init__(inputs, out_vectors, counts, params)
        self.in_counts = torch.zeros(len(inputs), dtype=torch.float64)
        self.flat = torch.from_numpy(sub.flat)
        self.starts = torch.from_numpy(sub.offsets[:-1].copy())
        self.lengths = torch.from_numpy(np.diff(sub.offsets))

    def packed(self, centers: torch.Tensor) -> PackedContexts:
        """The centers' subword rows, packed (row i's are flat[offsets[i]:offsets[i + 1]])."""
        lengths = self.lengths[centers]
        offsets = torch.zeros(len(centers) + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        total = int(offsets[-1])
        shift = torch.repeat_interleave(self.starts[centers] - offsets[:-1], lengths, output_size=total)
        return PackedContexts(self.flat[torch.arange(total) + shift], offsets)

    def _count(self, in_rows: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor) -> None:
        v = len(self.out_counts)
        self.in_counts += torch.bincount(in_rows, minlength=len(self.in_counts))
        self.out_counts += torch.bincount(pos, minlength=v)
        self.out_counts += torch.bincount(negs.reshape(-1), minlength=v) * self.p.neg_share

    def _sgns_chunk(self, ids, sent, lr, lr_next, rng, gen, stats) -> None:
        centers, contexts = skipgram_pairs(ids, sent, self.p.window, rng)
        if len(centers) == 0:
            return
        order = torch.from_numpy(rng.permutation(len(centers)))
        centers = torch.from_numpy(centers.astype(np.int64))[order]
        contexts = torch.from_numpy(contexts.astype(np.int64))[order]
        for lo, hi, a in self._schedule(len(centers), lr, lr_next):
            sub, pos, negs = self.packed(centers[lo:hi]), contexts[lo:hi], self._negatives(hi - lo, gen)
            stats.loss_sum += cbow_step(self.w_in, self.w_out, sub, pos, negs, a)
            stats.examples += hi - lo
            self._count(sub.flat, pos, negs)
