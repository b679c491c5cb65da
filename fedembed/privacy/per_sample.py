"""Exact per-sample gradient norms and clipping for embedding tables, without [B, V, D].

A sample's gradient on an embedding table is zero except on the rows the sample touched,
so it is fully described by its per-(sample, row) sums: every gradient contribution (one
vector for one row, from one of the sample's pairs) is added into a slot keyed by
`sample·V + row` (found once per step with `torch.unique`). The sample's squared norm is
the sum of its slots' squared norms, over every table; its clipped gradient is its slots
scaled by min(1, C / ‖g‖); the clipped sum over samples is an `index_add_` of the scaled
slots into the table's rows. Memory is O(slots · D), at most the number of contributions,
never O(B · V · D). This is the computation of Opacus' ghost-clipping norm sampler for
`nn.Embedding` (`compute_embedding_norm_sample`), extended across several tables and
several contribution sources per table, with the clipped sum taken from the same slots
instead of Opacus' second backward pass.
"""
from __future__ import annotations

from typing import Sequence

import torch

# Opacus' clipping factor is C / (‖g‖ + 1e-6), capped at 1; the same keeps the two comparable.
_EPS = 1e-6


class RowSums:
    """One table's per-sample gradients, as sums over the (sample, row) slots they touch.

    `sources` are lists of (sample [N], row [N]) entries that contributions are made to
    (e.g. a batch's tokens, and its negatives); the vectors arrive later, any number of
    times per entry and in any number of pieces, through `add`, so the forward pass can
    run in cache-sized chunks.
    """

    def __init__(self, sources: Sequence[tuple[torch.Tensor, torch.Tensor]], vocab_size: int, dim: int,
                 dtype: torch.dtype = torch.float32) -> None:
        keys = torch.cat([s * vocab_size + r for s, r in sources])
        slots, inverse = torch.unique(keys, return_inverse=True)
        self.sample = torch.div(slots, vocab_size, rounding_mode="floor")
        self.row = slots % vocab_size
        self.vec = torch.zeros(len(slots), dim, dtype=dtype)
        self._inverse = inverse.split([len(r) for _, r in sources])

    def add(self, source: int, which: torch.Tensor | slice, vec: torch.Tensor) -> None:
        """Add `vec` [N, D] to the slots of entries `which` (indices or a slice) of `source`."""
        self.vec.index_add_(0, self._inverse[source][which], vec)


def squared_norms(tables: Sequence[RowSums], num_samples: int) -> torch.Tensor:
    """‖g_s‖² over every table together [S]: the DP unit is the sample, not the table."""
    out = torch.zeros(num_samples, dtype=torch.float64)
    for t in tables:
        out.index_add_(0, t.sample, torch.linalg.vector_norm(t.vec, dim=1).double().square())
    return out


def clip_factors(sq_norms: torch.Tensor, clip: float) -> torch.Tensor:
    """min(1, C / ‖g_s‖): scaling each sample by this bounds its whole influence by C."""
    return (clip / (sq_norms.sqrt() + _EPS)).clamp_(max=1.0)


def add_clipped(target: torch.Tensor, sums: RowSums, factors: torch.Tensor, scale: float = 1.0) -> None:
    """target += scale · Σ_s factor_s · g_s, each slot into its row (scales `sums.vec` in place)."""
    sums.vec.mul_((factors[sums.sample] * scale).to(sums.vec.dtype).unsqueeze(1))
    target.index_add_(0, sums.row, sums.vec)
