"""FedAvgM (Hsu et al. 2019, "Measuring the Effects of Non-Identical Data Distribution …"):
server momentum on the round's aggregate, v ← β·v + Δ, tables += lr·v; `nesterov` applies
lr·(β·v + Δ) with the updated v (PyTorch's form). Kairouz et al. 2021 use the same heavy ball
on DP-FTRL's noisy increments. Lazy by default: see fedembed/server_opt/__init__.py."""
from __future__ import annotations

import numpy as np

from fedembed.server_opt import SERVER_OPTIMIZERS, split_state, touched_rows


@SERVER_OPTIMIZERS.register("momentum")
class ServerMomentum:
    nesterov = False

    def __init__(self, lr: float = 1.0, beta: float = 0.9, lazy: bool = True) -> None:
        self.lr, self.beta, self.lazy = lr, beta, lazy
        self.velocity: dict[str, np.ndarray] = {}    # float64, created at the first step

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.federation.server_lr, cfg.federation.server_momentum)

    def step(self, tables: dict[str, np.ndarray], delta: dict[str, np.ndarray]) -> None:
        for k, d in delta.items():
            d = np.asarray(d, dtype=np.float64)
            v = self.velocity.setdefault(k, np.zeros(d.shape))
            rows = touched_rows(d) if self.lazy else slice(None)
            v[rows] = self.beta * v[rows] + d[rows]
            move = self.beta * v[rows] + d[rows] if self.nesterov else v[rows]
            tables[k][rows] += (self.lr * move).astype(tables[k].dtype)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {f"momentum/{k}": v for k, v in self.velocity.items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.velocity = {k: v.astype(np.float64) for k, v in split_state(arrays, "momentum").items()}


@SERVER_OPTIMIZERS.register("nesterov")
class ServerNesterov(ServerMomentum):
    nesterov = True
