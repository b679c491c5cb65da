"""Norm bounding (Sun et al. 2019, "Can You Really Backdoor Federated Learning?"), per update and per row.

Each client's Δ (all tables together, over the rows it touched) is scaled to L2 norm ≤ C
(robust.norm_bound), after each of its rows is scaled to ≤ c (robust.row_bound, 0 = off), and
rows are averaged over the clients that touched them (presence weights: a claimed count cannot
take a row over). The row bound is the embedding-specific half: a targeted attack writes one
row (A's), whose norm is lost inside a whole-update norm of thousands of honest rows, so the
update bound alone hardly touches it; the row bound caps it at an honest row's size.

With C > 0 clipping happens on the client, as a stage before masking, and again on the server
for every update it sees; the server's sum of clipped updates is an ordinary mean, so the rule
composes with secure aggregation: the secure sum of clipped updates is what it needs. What
secure aggregation takes away is the check: the server cannot see a client's norm, so under it
the bound binds only clients that run the clipping stage (a malicious client could skip it
unnoticed unless it proved its norm in zero knowledge, which fedembed does not implement).
C = 0 takes the median of the round's update norms as the bound (adaptive, no tuning): the
server needs every update's norm for that, so it does not compose with secure aggregation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedembed.aggregate import AGGREGATORS, BaseRule
from fedembed.aggregate.accumulate import Accumulator, expand_rows, validate
from fedembed.aggregate.robust import UpdateCollector, presence_weights
from fedembed.errors import UpdateError
from fedembed.updates import ClientUpdate

_MARGIN = 1e-6  # clip to bound·(1 − margin): float32 rounding never lands above the bound


def clip_rows(deltas: dict[str, np.ndarray], row_bound: float) -> dict[str, np.ndarray]:
    """Each row scaled to L2 norm ≤ row_bound (0 = unchanged)."""
    if row_bound <= 0:
        return deltas
    out = {}
    for k, d in deltas.items():
        n = np.linalg.norm(d.astype(np.float64), axis=1)
        f = np.where(n > row_bound, row_bound * (1.0 - _MARGIN) / np.maximum(n, 1e-300), 1.0)
        out[k] = (d * f[:, None]).astype(d.dtype)
    return out


def update_norm(deltas: dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.dot(a.ravel().astype(np.float64), a.ravel().astype(np.float64)))
                         for a in deltas.values()))


def clip_factor(norm: float, bound: float) -> float:
    return 1.0 if bound <= 0 or norm <= bound else bound * (1.0 - _MARGIN) / norm


def as_deltas(tables: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Δ = table / weight on touched rows, 0 elsewhere, in float64."""
    out = {}
    for k, t in tables.items():
        w = np.asarray(weights[k], dtype=np.float64)
        out[k] = np.asarray(t, dtype=np.float64) * np.divide(1.0, w, out=np.zeros_like(w), where=w > 0)[:, None]
    return out


@dataclass(frozen=True)
class ClipDeltas:
    """Client stage (after `weight_rows`, presence weights, so tables = Δ): rows to ≤ c, then the update to ≤ C."""
    bound: float
    row_bound: float

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        tables = clip_rows(update.tables, self.row_bound)
        f = clip_factor(update_norm(tables), self.bound)
        update.tables = {k: (t * f).astype(np.float32) for k, t in tables.items()}
        return update

    def describe(self) -> str:
        rows = f"each row to L2 ≤ {self.row_bound:g}, then " if self.row_bound > 0 else ""
        return f"norm bound (robust rule): {rows}the whole delta to L2 ≤ {self.bound:g}"


class NormBoundAccumulator(Accumulator):
    """Fixed C: running sums of clipped Δ and presence (streaming, like the plain mean)."""
    adds_rows = False  # the bound is on the whole update: a sparse reply is expanded and clipped like a dense one

    def __init__(self, shapes: dict[str, tuple[int, ...]], bound: float, row_bound: float) -> None:
        super().__init__(shapes)
        self.bound, self.row_bound = bound, row_bound

    def add(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray], clients: int = 1) -> None:
        if clients != 1:
            raise UpdateError("a robust rule needs each client's own update, not a cohort's sum")
        validate(tables, weights, self.shapes)
        deltas = clip_rows(as_deltas(tables, weights), self.row_bound)
        f = clip_factor(update_norm(deltas), self.bound)
        for k in self.shapes:
            self.sums[k] += deltas[k] * f
            self.weights[k] += (np.asarray(weights[k]) > 0).astype(np.float64)
        self.count += 1

    def add_rows(self, values: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                 rows: dict[str, np.ndarray]) -> None:
        self.add(*expand_rows(values, weights, rows, self.shapes))


class MedianNormCollector(UpdateCollector):
    """C = 0: keeps the (row-clipped) updates and their norms; the bound is the round's median norm."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], row_bound: float) -> None:
        super().__init__(shapes)
        self.row_bound = row_bound
        self.norms: list[float] = []

    def add(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray], clients: int = 1) -> None:
        if clients != 1:
            raise UpdateError("a robust rule needs each client's own update, not a cohort's sum")
        validate(tables, weights, self.shapes)
        deltas = clip_rows(as_deltas(tables, weights), self.row_bound)
        present = {k: (np.asarray(w) > 0).astype(np.float32) for k, w in weights.items()}
        super().add({k: (d * present[k][:, None]).astype(np.float32) for k, d in deltas.items()}, present)
        self.norms.append(update_norm(deltas))

    def combine(self, deltas: np.ndarray, touched: np.ndarray) -> np.ndarray:
        bound = float(np.median(self.norms))
        f = np.array([clip_factor(n, bound) for n in self.norms])[:, None]  # [n, 1]
        weight = touched * f                                               # [n, R]
        return np.einsum("nr,nrd->rd", weight, deltas.astype(np.float64)) / touched.sum(axis=0)[:, None]


@AGGREGATORS.register("norm_bound")
class NormBound(BaseRule):
    def __init__(self, cfg) -> None:
        self.bound, self.row_bound = cfg.robust.norm_bound, cfg.robust.row_bound
        self.composes_with_secagg = self.bound > 0
        self.secagg_reason = (
            "each client clips its own update before masking and the rule is then a mean, i.e. a sum; but "
            "under secure aggregation the server cannot verify a client's norm, so the bound binds only "
            "clients that run the clipping stage" if self.bound > 0 else
            "robust.norm_bound = 0 clips to the median of the round's update norms, which needs every "
            "client's norm; secure aggregation reveals only the sum (give a fixed robust.norm_bound)")

    def client_weights(self, row_counts: dict[str, np.ndarray], examples: int) -> dict[str, np.ndarray]:
        return presence_weights(row_counts)

    def client_stages(self) -> list[ClipDeltas]:
        return [ClipDeltas(self.bound, self.row_bound)] if self.bound > 0 or self.row_bound > 0 else []

    def collector(self, shapes: dict[str, tuple[int, ...]]):
        if self.bound > 0:
            return NormBoundAccumulator(shapes, self.bound, self.row_bound)
        return MedianNormCollector(shapes, self.row_bound)
