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

    def _sgns_update(self, centers: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, a: float) -> float:
        """The centre's hidden vector is the mean of its subword rows: CBOW's step over them."""
        sub = self.packed(centers)
        loss = cbow_step(self.w_in, self.w_out, sub, pos, negs, a)
        self._count(sub.flat, pos, negs)
        return loss
