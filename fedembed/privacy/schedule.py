"""Fixed, data-independent participation schedules: which clients take part in which step.

DP-FTRL claims no amplification, so its guarantee needs no secret randomness in who takes
part — but its sensitivity depends on *when* a client can take part (how its rounds fall
into the tree's nodes, fedembed/privacy/tree_accounting.py). A schedule fixes that before
the run, from public information only. Steps are 1-based and count released rounds (a round
aborted by secure aggregation releases nothing and is retried with the same cohort).

What the accounting needs is `patterns(steps)`: the distinct sets of steps (≤ steps) in
which some client may take part; a client that drops out of a step it was scheduled for
only lowers its own sensitivity, so the schedule's patterns bound every realised run.

- `EveryRound`: every client in every step (cross-silo; k = T participations). Also the
  worst case for any sampling the accounting cannot see: Poisson sampling without
  amplification could draw a client every round.
- `CyclicCohorts`: the clients shuffled once with a public seed into P = ⌊N/m⌋ cohorts
  (sizes ⌊N/P⌋ or ⌈N/P⌉), step r uses cohort (r − 1) mod P: each client takes part in
  ⌈(T − offset)/P⌉ ≤ ⌈T/P⌉ steps, P steps apart (Kairouz et al. 2021's "epochs").
- `Explicit`: any given per-client list of steps (tests, custom schedules).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Schedule(Protocol):
    def patterns(self, steps: int) -> list[list[int]]: ...
    def clients(self, step: int) -> list[int]: ...


@dataclass(frozen=True)
class EveryRound:
    num_clients: int

    def patterns(self, steps: int) -> list[list[int]]:
        return [list(range(1, steps + 1))] if steps > 0 else []

    def clients(self, step: int) -> list[int]:
        return list(range(self.num_clients))


@dataclass(frozen=True)
class CyclicCohorts:
    num_clients: int
    cohort_size: int
    seed: int = 0          # public: the shuffle needs no secrecy, nothing is amplified

    def __post_init__(self) -> None:
        if not 0 < self.cohort_size <= self.num_clients:
            raise ValueError(f"cohort size {self.cohort_size} must be in [1, {self.num_clients}]")

    @property
    def period(self) -> int:
        """P: the number of cohorts, and the number of steps between a client's participations."""
        return max(1, self.num_clients // self.cohort_size)

    def cohorts(self) -> list[list[int]]:
        order = np.random.default_rng(self.seed).permutation(self.num_clients)
        return [sorted(int(c) for c in part) for part in np.array_split(order, self.period)]

    def clients(self, step: int) -> list[int]:
        if step < 1:
            raise ValueError(f"steps are 1-based, got {step}")
        return self.cohorts()[(step - 1) % self.period]

    def patterns(self, steps: int) -> list[list[int]]:
        p = self.period
        return [list(range(offset, steps + 1, p)) for offset in range(1, min(p, steps) + 1)]


@dataclass(frozen=True)
class Explicit:
    participations: Sequence[Sequence[int]]   # per client, the steps it takes part in (1-based)

    def __post_init__(self) -> None:
        bad = [r for rs in self.participations for r in rs if int(r) < 1]
        if bad:
            raise ValueError(f"steps are 1-based, got {bad[0]}")

    def patterns(self, steps: int) -> list[list[int]]:
        out = {tuple(sorted({int(r) for r in rs if 1 <= r <= steps})) for rs in self.participations}
        return [list(p) for p in out if p]

    def clients(self, step: int) -> list[int]:
        return [c for c, rs in enumerate(self.participations) if step in rs]


def schedule_for(cfg) -> Schedule:
    """DP-FTRL's schedule from the scenario: every client every round when
    `federation.clients_per_round` = 0, else cyclic cohorts of that size, shuffled with `seed`."""
    n, m = cfg.partition.num_clients, cfg.federation.clients_per_round
    return EveryRound(n) if m == 0 or m >= n else CyclicCohorts(n, m, cfg.seed)
