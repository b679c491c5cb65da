"""Scaling (boosting): send the trained delta multiplied by adversary.scale.

The simplest model-poisoning lever (Bhagoji et al. 2019's explicit boosting): an honest
direction with an outsized magnitude drags every row it touched. The weights stay honest.
"""
from __future__ import annotations

import numpy as np

from fedembed.attacks.adversaries import ADVERSARIES, boost
from fedembed.updates import ClientUpdate


@ADVERSARIES.register("scaling")
class Scaling:
    def __init__(self, cfg, ctx) -> None:
        self.factor = boost(cfg)

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        update.tables = {k: (t * self.factor).astype(np.float32) for k, t in update.tables.items()}
        return update
