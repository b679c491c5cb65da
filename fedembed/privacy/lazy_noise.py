"""DP-SGD's Gaussian noise on every coordinate of every step, drawn when a row is next read.

DP-SGD adds N(0, s_t²) to every coordinate of both tables at every step t, touched or not.
Drawing V·D·2 normals per step makes the noise, not the gradient, the cost of a step. But
plain SGD is linear in the noise: a row that no step reads between t₀ and t₁ ends up with
the sum of those steps' draws, a single N(0, Σ s_t²). So each row keeps how much of the
running variance Σ s_t² it has received; before a step reads rows, they get one draw with
the variance they are owed, and at the end every row gets the rest. Every value a step
reads and the final tables have exactly the distribution of eager DP-SGD's — the same
mechanism, so the same guarantee — while a step only draws noise for the rows it reads.
"""
from __future__ import annotations

import torch


class LazyNoise:
    def __init__(self, tables: list[torch.Tensor], generator: torch.Generator) -> None:
        self.tables = tables
        self.gen = generator
        self.total = 0.0                                              # Σ s_t² over steps so far
        self.given = [torch.zeros(t.shape[0], dtype=torch.float64) for t in tables]
        self.drawn = 0                                                # normals drawn so far (eager: 2·V·D a step)

    def step(self, std: float) -> None:
        """Owe every coordinate of every table one more N(0, std²)."""
        self.total += std * std

    def settle(self, table: int, rows: torch.Tensor) -> None:
        """Give `rows` (unique) of table `table` the noise they are owed, before they are read."""
        owed = self.total - self.given[table][rows]
        due = owed > 0
        if not bool(due.all()):
            rows, owed = rows[due], owed[due]
        if len(rows) == 0:
            return
        t = self.tables[table]
        noise = torch.randn(len(rows), t.shape[1], generator=self.gen, dtype=t.dtype)
        self.drawn += noise.numel()
        noise.mul_(owed.sqrt().to(t.dtype).unsqueeze(1))
        t.index_add_(0, rows, noise)
        self.given[table][rows] = self.total

    def settle_all(self) -> None:
        """Every row of every table gets what it is owed: call before the tables leave the client."""
        for i, t in enumerate(self.tables):
            self.settle(i, torch.arange(t.shape[0]))
