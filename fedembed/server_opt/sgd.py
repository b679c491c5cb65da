"""Plain server SGD: tables += server_lr·Δ, exactly what the round loop did before optimisers."""
from __future__ import annotations

import numpy as np

from fedembed.server_opt import SERVER_OPTIMIZERS


@SERVER_OPTIMIZERS.register("sgd")
class ServerSGD:
    def __init__(self, lr: float = 1.0) -> None:
        self.lr = lr

    @classmethod
    def from_config(cls, cfg) -> "ServerSGD":
        return cls(cfg.federation.server_lr)

    def step(self, tables: dict[str, np.ndarray], delta: dict[str, np.ndarray]) -> None:
        for k, d in delta.items():
            tables[k] += self.lr * d          # the same expression as before, so the same bits

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        pass
