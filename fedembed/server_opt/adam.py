"""FedAdam (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2).

m ← β₁m + (1 − β₁)Δ, v ← β₂v + (1 − β₂)Δ², tables += η·m/(√v + τ), with m₋₁ = 0 and
v₋₁ = τ² (the paper's v₋₁ ≥ τ²). τ is the adaptivity: it bounds the step by η·|m|/τ and
makes rows with tiny second moments move like SGD with step η/τ. The paper's algorithm has
no bias correction; `bias_correction=True` uses Kingma & Ba's α_t = η·√(1 − β₂ᵗ)/(1 − β₁ᵗ)
(as Flower's FedAdam does), t the number of steps taken (also for lazy rows, like LazyAdam).
β₁ = federation.server_momentum (0.9), β₂ = server_beta2 (0.99), τ = server_tau (1e-3):
the paper's β's, and a τ from its tuned range. Lazy by default: see __init__.py.
"""
from __future__ import annotations

import numpy as np

from fedembed.server_opt import SERVER_OPTIMIZERS, split_state, touched_rows


@SERVER_OPTIMIZERS.register("adam")
class ServerAdam:
    def __init__(self, lr: float = 1.0, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3,
                 lazy: bool = True, bias_correction: bool = False) -> None:
        self.lr, self.beta1, self.beta2, self.tau = lr, beta1, beta2, tau
        self.lazy, self.bias_correction = lazy, bias_correction
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    @classmethod
    def from_config(cls, cfg) -> "ServerAdam":
        f = cfg.federation
        return cls(f.server_lr, f.server_momentum, f.server_beta2, f.server_tau)

    def step(self, tables: dict[str, np.ndarray], delta: dict[str, np.ndarray]) -> None:
        self.t += 1
        lr = self.lr
        if self.bias_correction:
            lr *= np.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        for k, d in delta.items():
            d = np.asarray(d, dtype=np.float64)
            m = self.m.setdefault(k, np.zeros(d.shape))
            v = self.v.setdefault(k, np.full(d.shape, self.tau * self.tau))
            rows = touched_rows(d) if self.lazy else slice(None)
            dr = d[rows]
            m[rows] = self.beta1 * m[rows] + (1 - self.beta1) * dr
            v[rows] = self.beta2 * v[rows] + (1 - self.beta2) * dr * dr
            tables[k][rows] += (lr * m[rows] / (np.sqrt(v[rows]) + self.tau)).astype(tables[k].dtype)

    def state_arrays(self) -> dict[str, np.ndarray]:
        out = {f"adam_m/{k}": a for k, a in self.m.items()}
        out.update({f"adam_v/{k}": a for k, a in self.v.items()})
        out["adam_t"] = np.asarray(self.t, dtype=np.int64)
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.m = {k: a.astype(np.float64) for k, a in split_state(arrays, "adam_m").items()}
        self.v = {k: a.astype(np.float64) for k, a in split_state(arrays, "adam_v").items()}
        self.t = int(arrays.get("adam_t", 0))
