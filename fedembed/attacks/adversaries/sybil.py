"""Sybils: one attacker behind every malicious identity, all sending the same crafted update.

The identical copies are what Sybil defences look for (FoolsGold, Fung et al. 2020) and what
Krum rewards: a tight cluster looks central. Identical updates need a crafting that does not
depend on any one identity's data, so the update is built only from the round's global tables,
the public vocabulary counts and the seed: `sybil_base = "targeted_poison"` sends Δ on A's row
only (as targeted_poison.py, boosted), `"gaussian_noise"` one shared N(0, noise_std²) draw on
every row. The weights are the rule's weights for a typical client — public count of a word ÷
num_clients — so no identity claims more than an honest client would.
"""
from __future__ import annotations

import numpy as np

from fedembed import aggregate
from fedembed.attacks.adversaries import ADVERSARIES, Attack, boost
from fedembed.attacks.adversaries.targets import POISONED, poisoned_row
from fedembed.updates import ClientUpdate

_STREAM = 0x5B11


@ADVERSARIES.register("sybil")
class Sybil(Attack):
    what = "one crafted update, identical from every malicious identity"

    def __init__(self, cfg, ctx) -> None:
        super().__init__(cfg, ctx)

    def typical_weights(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The rule's weights for a client holding an average share of the public counts of `rows`."""
        share = np.maximum(1.0, self.ctx.counts.astype(np.float64) / self.cfg.partition.num_clients)
        counts = np.where(rows, share, 0.0)
        examples = int(max(1.0, share.sum()))
        return aggregate.make(self.cfg).client_weights({k: counts for k in self.ctx.global_tables}, examples)

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        g = self.ctx.global_tables
        if self.cfg.adversary.sybil_base == "targeted_poison":
            row, d = poisoned_row(self.cfg, self.ctx, boost(self.cfg))
            tables = {k: np.zeros_like(v, dtype=np.float32) for k, v in g.items()}
            tables[POISONED][row] = d
            rows = np.zeros(len(self.ctx.counts), dtype=bool)
            rows[row] = True
            weights = self.typical_weights(rows)
            weights = {k: (w if k == POISONED else np.zeros_like(w)).astype(np.float32) for k, w in weights.items()}
        else:
            rng = np.random.default_rng([self.cfg.seed, _STREAM, self.ctx.round])  # shared by every Sybil
            tables = {k: rng.normal(0.0, self.cfg.adversary.noise_std, g[k].shape).astype(np.float32)
                      for k in sorted(g)}
            weights = {k: w.astype(np.float32)
                       for k, w in self.typical_weights(np.ones(len(self.ctx.counts), dtype=bool)).items()}
        update.tables, update.weights = tables, weights
        return update
