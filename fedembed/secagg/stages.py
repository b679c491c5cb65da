"""SecAgg+'s client stages, the last of the update pipeline: flatten → range clip → quantize → mask.

(Distributed DP's noise share runs between the range clip and the quantizer:
fedembed/privacy/distributed.py. The composition root puts them in order.) Each stage works on
`ClientUpdate.vector`, the update as one vector in the round's `Layout` (every table, then
every per-row weight vector, then the extra values summed alongside such as the adaptive
clipping bit); after `Mask` that vector is the only thing of the update the server receives.
"""
from __future__ import annotations

import numpy as np

from fedembed.secagg.client import MaskContext, SecAggClientError
from fedembed.secagg.prg import Expander
from fedembed.secagg.quantize import Layout, Quantizer
from fedembed.updates import ClientUpdate

CLIPPED = "secagg_clipped"   # metric: how many values the range clip changed


class Flatten:
    """tables, weights (and the extra values, taken out of the metrics) → one float64 vector."""

    def __init__(self, layout: Layout, extra_metric: str | None = None, pid: int = -1) -> None:
        self.layout, self.extra_metric, self.pid = layout, extra_metric, pid

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        extra = None
        if self.layout.extra:   # adaptive clipping: the clip bit is summed under the masks, not sent
            if self.extra_metric is None or self.extra_metric not in update.metrics:
                raise SecAggClientError(f"client {self.pid}: adaptive clipping is on but the update has no clip bit")
            extra = np.array([update.metrics.pop(self.extra_metric)])
        update.vector = self.layout.flatten(update.tables, update.weights, extra)
        return update

    def describe(self) -> str:
        extra = " and the clip bit" if self.layout.extra else ""
        return f"flatten: the tables, their per-row weights{extra}, as one vector of {self.layout.size:,} values"


class RangeClip:
    """Each part clipped to its quantization range (a no-op under user-level DP, whose clip bounds it)."""

    def __init__(self, q: Quantizer, report: bool = True) -> None:
        self.q, self.report = q, report

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        clipped = self.q.clip(update.vector)
        if self.report:
            update.metrics[CLIPPED] = float(clipped)
        return update

    def describe(self) -> str:
        r = self.q.ranges
        return f"range clip: tables to ±{r['tables']:g}, weights to ±{r['weights']:g}"


class Quantize:
    """Stochastic rounding to `bits` levels in Z_{2^ring} (subtractively dithered under DP)."""

    def __init__(self, q: Quantizer, dither_key: bytes | None = None, rng: np.random.Generator | None = None) -> None:
        self.q, self.dither_key, self.rng = q, dither_key, rng

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        update.vector = self.q.encode(update.vector, self.dither_key, self.rng)
        return update

    def describe(self) -> str:
        how = "subtractively dithered" if self.dither_key is not None else "stochastic rounding"
        return f"quantize: {self.q.bits} bits, {how}, into Z_2^{self.q.ring}"


class Mask:
    """The self mask PRG(b) and ±PRG(s_uv) for every peer: what is left is uniform but for the sum."""

    def __init__(self, ctx: MaskContext) -> None:
        self.ctx = ctx

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        ex = Expander()
        for key, sign in self.ctx.masks():
            ex.add(update.vector, key, sign)
        return update

    def describe(self) -> str:
        return f"mask (SecAgg+): self mask + pairwise masks with {len(self.ctx.masks()) - 1} peers"
