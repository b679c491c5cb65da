"""Gaussian noise: send N(0, noise_std²) instead of the trained delta, on the rows it touched.

The Byzantine "random update" of Blanchard et al. 2017 and Fang et al. 2020: no information,
full-size damage to every row the client claims. Drawn from (seed, round, partition), so a
run is reproducible; the honest weights are kept so the noise lands where an honest update would.
"""
from __future__ import annotations

import numpy as np

from fedembed.attacks.adversaries import ADVERSARIES, Attack
from fedembed.updates import ClientUpdate

_STREAM = 0x6A55


def noise_like(update: ClientUpdate, std: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """N(0, std²) on the rows with weight > 0, zero elsewhere (table order fixed, so same rng → same draw)."""
    out = {}
    for k in sorted(update.tables):
        t = update.tables[k]
        rows = update.weights[k] > 0
        n = rng.normal(0.0, std, t.shape).astype(np.float32)
        out[k] = np.where(rows[:, None], n, 0.0).astype(np.float32)
    return out


@ADVERSARIES.register("gaussian_noise")
class GaussianNoise(Attack):
    what = "a random N(0, noise_std²) delta on every row instead of the trained one"

    def __init__(self, cfg, ctx) -> None:
        super().__init__(cfg, ctx)
        self.std = cfg.adversary.noise_std
        self.rng = np.random.default_rng([cfg.seed, _STREAM, ctx.round, ctx.partition_id])

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        update.tables = noise_like(update, self.std, self.rng)
        return update
