"""Scaling (boosting): send the trained delta multiplied by adversary.scale.

The simplest model-poisoning lever (Bhagoji et al. 2019's explicit boosting): an honest
direction with an outsized magnitude drags every row it touched. The weights stay honest.
"""
from __future__ import annotations

import numpy as np

from fedembed.attacks.adversaries import ADVERSARIES, Attack, boost
from fedembed.updates import ClientUpdate


@ADVERSARIES.register("scaling")
class Scaling(Attack):
    what = "its trained delta times adversary.scale"

    def __init__(self, cfg, ctx) -> None:
        super().__init__(cfg, ctx)
        self.factor = boost(cfg)

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        update.tables = {k: (t * self.factor).astype(np.float32) for k, t in update.tables.items()}
        return update
