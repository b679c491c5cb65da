"""Server side: validate each client's reply and add it to running sums.

Replies are folded in one at a time, so the server holds two sums, not K updates.
A reply with the wrong tables, a wrong shape, NaN/Inf or negative weights is refused
with an `UpdateError` naming the problem; it never reaches the sums.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from fedembed.errors import UpdateError


class Collector(Protocol):
    """Where a round's accepted updates go (running sums, or a robust rule's store).

    `sums` / `weights` are what the server divides row by row at the end of the round."""
    keeps_updates: bool   # holds every update: the server adds a round's updates in partition order
    adds_rows: bool       # `add_rows` takes a sparse reply in place (no dense copy), same sums as `add`
    count: int

    def add(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray], clients: int = 1) -> None: ...

    def add_rows(self, values: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                 rows: dict[str, np.ndarray]) -> None: ...

    @property
    def sums(self) -> dict[str, np.ndarray]: ...

    @property
    def weights(self) -> dict[str, np.ndarray]: ...


def validate(tables: dict[str, np.ndarray], weights: dict[str, np.ndarray],
             shapes: dict[str, tuple[int, ...]]) -> None:
    if set(tables) != set(shapes):
        raise UpdateError(f"update has tables {sorted(tables)}, expected {sorted(shapes)}")
    if set(weights) != set(shapes):
        raise UpdateError(f"update has weights for {sorted(weights)}, expected {sorted(shapes)}")
    for name, shape in shapes.items():
        t, w = tables[name], weights[name]
        if t.shape != shape:
            raise UpdateError(f"table {name!r} has shape {t.shape}, expected {shape}")
        if w.shape != (shape[0],):
            raise UpdateError(f"weights of {name!r} have shape {w.shape}, expected ({shape[0]},)")
        if not np.issubdtype(t.dtype, np.floating) or not np.issubdtype(w.dtype, np.floating):
            raise UpdateError(f"{name!r}: expected floating-point arrays, got {t.dtype} and {w.dtype}")
        if not np.isfinite(t).all():
            raise UpdateError(f"table {name!r} holds NaN or Inf")
        _check_weights(name, w)


def _check_weights(name: str, w: np.ndarray) -> None:
    if not np.isfinite(w).all() or (w < 0).any():
        raise UpdateError(f"weights of {name!r} hold NaN, Inf or negative values")


def expand_rows(values: dict[str, np.ndarray], weights: dict[str, np.ndarray], rows: dict[str, np.ndarray],
                shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A sparse reply's rows as dense tables and weights (zeros elsewhere)."""
    tables = {k: np.zeros(s, dtype=values[k].dtype) for k, s in shapes.items()}
    dense_w = {k: np.zeros(s[0], dtype=weights[k].dtype) for k, s in shapes.items()}
    for k in shapes:
        tables[k][rows[k]] = values[k]
        dense_w[k][rows[k]] = weights[k]
    return tables, dense_w


class Accumulator:
    keeps_updates = False
    adds_rows = True   # `add_rows` gives `add`'s sums; a subclass whose `add` transforms the update sets False

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.shapes = shapes
        self.sums = {k: np.zeros(s, dtype=np.float64) for k, s in shapes.items()}
        self.weights = {k: np.zeros(s[0], dtype=np.float64) for k, s in shapes.items()}
        self.count = 0

    def add(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray], clients: int = 1) -> None:
        """One client's update, or the sum of `clients` clients' (a FedSGD cohort summed on its node)."""
        validate(tables, weights, self.shapes)
        for k in self.shapes:
            self.sums[k] += tables[k]
            self.weights[k] += weights[k]
        self.count += clients

    def add_rows(self, values: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                 rows: dict[str, np.ndarray]) -> None:
        """A sparse reply's rows, without expanding it to dense tables first: the same sums as
        `add` of the expanded reply, bit for bit (untouched entries would only add 0.0).
        `rows` must already be checked (fedembed.federation.sparse.check: in range, unique)."""
        for k in self.shapes:
            _check_weights(k, weights[k])
        for k in self.shapes:
            self.sums[k][rows[k]] += values[k]
            self.weights[k][rows[k]] += weights[k]
        self.count += 1
