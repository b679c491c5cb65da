"""Targeted embedding poisoning: move word A's vector toward word B's (cf. Schuster et al. 2020,
"Humpty Dumpty: Controlling Word Meanings via Corpus Poisoning").

Schuster et al. poison the corpus so that A's co-occurrences look like B's; a federated client
controls its update directly, so it writes the outcome instead: A's row of the word vectors
(in_vectors) gets Δ = scale · strength · (G[B] − G[A]) from this round's global tables G, boosted
(scale 0 = num_clients / malicious) so that it survives averaging with the honest clients'
deltas for A, and re-applied every round against the honest training that pulls A back. Every
other row keeps the client's honest delta, which keeps the update unremarkable elsewhere. A's
weight is kept (or set to 1 if the client's data never had A, so the row counts).
"""
from __future__ import annotations

import numpy as np

from fedembed.attacks.adversaries import ADVERSARIES, Attack, boost
from fedembed.attacks.adversaries.targets import POISONED, poisoned_row
from fedembed.updates import ClientUpdate


@ADVERSARIES.register("targeted_poison")
class TargetedPoison(Attack):
    what = "a boosted delta moving adversary.target toward adversary.toward"

    def __init__(self, cfg, ctx) -> None:
        super().__init__(cfg, ctx)
        self.row, self.delta = poisoned_row(cfg, ctx, boost(cfg))

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        t = update.tables[POISONED].copy()
        t[self.row] = self.delta
        update.tables = {**update.tables, POISONED: t}
        w = update.weights[POISONED].copy()
        w[self.row] = max(float(w[self.row]), 1.0)
        update.weights = {**update.weights, POISONED: w.astype(np.float32)}
        return update
