"""Sparse uploads (plain path): a client sends only the rows it touched, with their indices.

Why: a client of a 1,000-client federation touches about 2,000 of 2×17,404 rows, so the dense
reply (both float32 [V, D] tables plus two [V] weight vectors, ~14 MB here) is
~94 % zero rows, and serialising, moving and checking it is framework cost, not training.
A row is left out only when both its weighted delta and its weight are exactly zero, so
the server's sums are the dense path's, bit for bit. Secure aggregation never uses this
(masked vectors must stay dense: fedembed.federation.wire.sparse_upload).
"""
from __future__ import annotations

import numpy as np

from fedembed.errors import UpdateError


def pack(tables: dict[str, np.ndarray], weights: dict[str, np.ndarray]
         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Rows with a non-zero delta or weight: (rows of each table, their weights, their int64 indices)."""
    values, kept, rows = {}, {}, {}
    for name, t in tables.items():
        w = weights[name]
        idx = np.flatnonzero((w != 0) | (t != 0).any(axis=1)).astype(np.int64)
        values[name], kept[name], rows[name] = t[idx], w[idx], idx
    return values, kept, rows


def check(values: dict[str, np.ndarray], weights: dict[str, np.ndarray], rows: dict[str, np.ndarray],
          shapes: dict[str, tuple[int, ...]] | None) -> None:
    """Refuse, with an `UpdateError` naming the problem, a sparse reply whose indices or shapes
    cannot be rows of the expected tables, or whose values are not finite."""
    if shapes is None:
        raise UpdateError("sparse reply, but the server passed no table shapes to check it against")
    for label, got in (("rows", rows), ("update", values), ("weights", weights)):
        if set(got) != set(shapes):
            raise UpdateError(f"sparse reply has {label} for {sorted(got)}, expected {sorted(shapes)}")
    for name, shape in shapes.items():
        idx, t, w = rows[name], values[name], weights[name]
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise UpdateError(f"rows of {name!r}: expected a 1-D integer array, got {idx.dtype} {idx.shape}")
        if t.shape != (len(idx), *shape[1:]):
            raise UpdateError(f"table {name!r} has shape {t.shape} for {len(idx)} rows, "
                              f"expected {(len(idx), *shape[1:])}")
        if w.shape != (len(idx),):
            raise UpdateError(f"weights of {name!r} have shape {w.shape} for {len(idx)} rows")
        if not np.issubdtype(t.dtype, np.floating) or not np.issubdtype(w.dtype, np.floating):
            raise UpdateError(f"{name!r}: expected floating-point arrays, got {t.dtype} and {w.dtype}")
        if len(idx) and (idx.min() < 0 or idx.max() >= shape[0]):
            raise UpdateError(f"rows of {name!r} out of range [0, {shape[0]}): {idx.min()}..{idx.max()}")
        if len(np.unique(idx)) != len(idx):
            raise UpdateError(f"rows of {name!r} hold duplicate indices")
        if not np.isfinite(t).all():
            raise UpdateError(f"table {name!r} holds NaN or Inf")


def unpack(values: dict[str, np.ndarray], weights: dict[str, np.ndarray], rows: dict[str, np.ndarray],
           shapes: dict[str, tuple[int, ...]] | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Dense tables and weights from a sparse reply (checked first: `check`)."""
    check(values, weights, rows, shapes)
    dense_t, dense_w = {}, {}
    for name, shape in shapes.items():  # type: ignore[union-attr]
        idx, t, w = rows[name], values[name], weights[name]
        dense_t[name] = np.zeros(shape, dtype=t.dtype)
        dense_t[name][idx] = t
        dense_w[name] = np.zeros(shape[0], dtype=w.dtype)
        dense_w[name][idx] = w
    return dense_t, dense_w
