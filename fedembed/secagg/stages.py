"""SecAgg+'s client stages, the last of the update pipeline: flatten → range clip → tally → quantize → mask.

(Distributed DP's noise share runs between the range clip and the tally:
fedembed/privacy/distributed.py. The composition root puts them in order.) Each stage works on
`ClientUpdate.vector`, the update as one vector in the round's `Layout` (every table, then
every per-row weight vector, then the extra values summed alongside: the adaptive clipping
bit, then the round's metric sums); after `Mask` that vector is the only thing the client
sends (fedembed/federation/secure_client.py): its metrics stay home but for the sums `Tally`
wrote into the vector.
"""
from __future__ import annotations

import numpy as np

from fedembed.secagg.client import MaskContext, SecAggClientError
from fedembed.secagg.prg import Expander
from fedembed.secagg.quantize import Layout, Quantizer
from fedembed.secagg.tally import CLIPPED, Tally as TallySpec
from fedembed.updates import ClientUpdate


class Flatten:
    """tables, weights (and the clip bit, taken out of the metrics) → one float64 vector; the
    last `tallied` extra values are left 0 for `Tally`."""

    def __init__(self, layout: Layout, extra_metric: str | None = None, pid: int = -1, tallied: int = 0) -> None:
        self.layout, self.extra_metric, self.pid, self.tallied = layout, extra_metric, pid, tallied
        self.bits = layout.extra - tallied

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        extra = np.zeros(self.layout.extra)
        if self.bits:   # adaptive clipping: the clip bit is summed under the masks, not sent
            if self.extra_metric is None or self.extra_metric not in update.metrics:
                raise SecAggClientError(f"client {self.pid}: adaptive clipping is on but the update has no clip bit")
            extra[:self.bits] = update.metrics.pop(self.extra_metric)
        update.vector = self.layout.flatten(update.tables, update.weights, extra)
        return update

    def describe(self) -> str:
        extra = " and the clip bit" if self.bits else ""
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


class Tally:
    """The round's metric sums (fedembed/secagg/tally.py) into the vector's last values, as exact
    integers: written, not added, so nothing an earlier stage put there (noise) survives."""

    def __init__(self, tally: TallySpec, layout: Layout, rng: np.random.Generator | None = None) -> None:
        self.tally, self.start, self.rng = tally, layout.size - tally.size, rng

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        update.vector[self.start:] = self.tally.encode(update.metrics, self.rng)
        return update

    def describe(self) -> str:
        return f"tally: {', '.join(self.tally.names)} as exact sums under the masks (not sent in the clear)"


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
