"""Quantization of an update into the secure-aggregation ring, and decoding of the sum.

A client's update is one vector: every table (weighted deltas), then every per-row weight
vector, in name order (`Layout`). Each part is clipped coordinate-wise to its range [−R, R],
scaled by s = L/R with L = 2^(bits−1) − 1, and rounded stochastically: q = ⌊s·x + u⌋ with
u ~ U[0, 1), so E[q] = s·x (unbiased) and |q| ≤ L. q is reduced mod 2^w and masked there.

The ring width w (32 or 64, so NumPy's uint arithmetic wraps for free) is the smallest
for which the *sum* of n clients' values cannot wrap: n·L plus room for the distributed-DP
noise (12 of its standard deviations) must stay below 2^(w−1); the server reads the sum as
a signed integer. Each client's own value may wrap; only the sum's true value matters.

With `dither_key` the uniform u comes from AES-CTR under a key the server can later derive
(it reconstructs the survivors' self-mask seeds anyway), so it can subtract Σu: that is
*subtractive dithering*, whose error ⌊z + u⌋ − (z + u) + ½ is uniform on (−½, ½] and
independent of z (Schuchman 1964). Distributed DP relies on it (fedembed/privacy/distributed.py):
the sum is then Σ x + Gaussian noise + data-independent noise, exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedembed.secagg.prg import Expander

NOISE_SIGMAS = 12.0          # headroom for the summed DP noise, in its standard deviations


@dataclass(frozen=True)
class Part:
    kind: str                # "tables" | "weights"
    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class Layout:
    """Where each table and weight vector lives in the flat vector; `extra` scalars (the
    adaptive-clipping bit, then the round's metric sums: fedembed/secagg/tally.py) go last."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], extra: int = 0) -> None:
        parts, off = [], 0
        for kind in ("tables", "weights"):
            for name in sorted(shapes):
                shape = tuple(shapes[name]) if kind == "tables" else (shapes[name][0],)
                parts.append(Part(kind, name, shape, off))
                off += parts[-1].size
        if extra:
            parts.append(Part("extra", "extra", (extra,), off))
            off += extra
        self.parts, self.size, self.extra = parts, off, extra
        self.table_size = sum(p.size for p in parts if p.kind == "tables")
        self.weight_end = self.size - extra

    def flatten(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                extra: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(self.size, dtype=np.float64)
        for p in self.parts:
            src = (tables[p.name] if p.kind == "tables" else weights[p.name] if p.kind == "weights"
                   else np.asarray(extra if extra is not None else np.zeros(p.size), dtype=np.float64))
            if tuple(src.shape) != p.shape:
                raise ValueError(f"{p.kind} {p.name!r} has shape {src.shape}, expected {p.shape}")
            out[p.offset:p.offset + p.size] = src.reshape(-1)
        return out

    def split(self, flat: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        tables, weights = {}, {}
        for p in self.parts:
            if p.kind != "extra":
                (tables if p.kind == "tables" else weights)[p.name] = \
                    flat[p.offset:p.offset + p.size].reshape(p.shape)
        return tables, weights


def levels(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def ring_bits(bits: int, clients: int, noise_levels: float = 0.0) -> int | None:
    """32 or 64: the narrowest ring where the sum of `clients` values (and the noise) cannot wrap."""
    bound = clients * (levels(bits) + 1) + NOISE_SIGMAS * noise_levels
    for w in (32, 64):
        if bound < 2 ** (w - 1):
            return w
    return None


class Quantizer:
    """Encode one client's update; decode the sum of many.

    The last `exact` values of the layout's extras are integers in [0, L] (the metric sums'
    limbs, fedembed/secagg/tally.py): they pass unscaled and without rounding noise, so they
    sum exactly; the other extras (the clip bit) are quantized in ±`extra_range`."""

    def __init__(self, layout: Layout, bits: int, table_range: float, weight_range: float, ring: int,
                 extra_range: float = 1.0, exact: int = 0) -> None:
        if not 0 <= exact <= layout.extra:
            raise ValueError(f"{exact} exact values do not fit the layout's {layout.extra} extra values")
        self.layout, self.bits, self.ring, self.exact = layout, bits, ring, exact
        self.dtype = np.uint32 if ring == 32 else np.uint64
        self.signed = np.int32 if ring == 32 else np.int64
        L = levels(bits)
        extra = np.array([float(extra_range)] * (layout.extra - exact) + [float(L)] * exact)
        self.ranges = {"tables": float(table_range), "weights": float(weight_range), "extra": extra}
        self.scales = {k: L / r for k, r in self.ranges.items()}

    def _segments(self):
        t, w = self.layout.table_size, self.layout.weight_end
        return (("tables", slice(0, t)), ("weights", slice(t, w)), ("extra", slice(w, self.layout.size)))

    def clip(self, x: np.ndarray) -> int:
        """Clip each part to its range in place; returns how many values were clipped."""
        clipped = 0
        for kind, sl in self._segments():
            r = self.ranges[kind]
            seg = x[sl]
            clipped += int(np.count_nonzero(np.abs(seg) > r))
            np.clip(seg, -r, r, out=seg)
        return clipped

    def uniform(self, dither_key: bytes | None, rng: np.random.Generator | None) -> np.ndarray:
        """u ~ U[0, 1)^d: from the dither key's keystream (reproducible by the server) or private randomness."""
        if dither_key is None:
            u = (rng or np.random.default_rng()).random(self.layout.size)
        else:
            u = Expander().stream(dither_key, self.layout.size, np.uint32) * (1.0 / 2 ** 32)
        if self.exact:
            u[self.layout.size - self.exact:] = 0.0     # integers: no rounding noise, so they sum exactly
        return u

    def encode(self, x: np.ndarray, dither_key: bytes | None = None,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """⌊s·x + u⌋ mod 2^w for an already clipped (and noised) float vector `x` (consumed)."""
        for kind, sl in self._segments():
            x[sl] *= self.scales[kind]
        x += self.uniform(dither_key, rng)
        np.floor(x, out=x)
        return x.astype(np.int64).astype(self.dtype)

    def decode(self, total: np.ndarray, dither_sum: np.ndarray | None = None
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The float sums (tables, weights) from the ring sum; subtracts Σ(u − ½) when dithered."""
        tables, weights, _ = self.decode_all(total, dither_sum)
        return tables, weights

    def decode_all(self, total: np.ndarray, dither_sum: np.ndarray | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
        """(tables, weights, extra) sums."""
        y = total.view(self.signed).astype(np.float64)
        if dither_sum is not None:
            y -= dither_sum
        for kind, sl in self._segments():
            y[sl] /= self.scales[kind]
        tables, weights = self.layout.split(y)
        return tables, weights, y[self.layout.weight_end:]
