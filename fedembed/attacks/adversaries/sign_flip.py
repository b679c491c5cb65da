"""Sign flip: send −scale·Δ, the trained delta reversed (and boosted).

Pushes every row the client touched away from where its data would take it: an untargeted
attack on quality (Damaskinos et al. 2018; Li et al. 2019's "sign-flipping").
"""
from __future__ import annotations

import numpy as np

from fedembed.attacks.adversaries import ADVERSARIES, Attack, boost
from fedembed.updates import ClientUpdate


@ADVERSARIES.register("sign_flip")
class SignFlip(Attack):
    what = "its trained delta times −adversary.scale"

    def __init__(self, cfg, ctx) -> None:
        super().__init__(cfg, ctx)
        self.factor = -boost(cfg)

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        update.tables = {k: (t * self.factor).astype(np.float32) for k, t in update.tables.items()}
        return update
