"""Server optimisers, one per file, registered by name (`federation.server_optimizer`).

The server's step turns the round's released aggregate Δ (the row-wise mean, or under
DP-FTRL the tree's noisy increment after the public row division) into a change of the
global tables: `sgd` is today's `tables += server_lr·Δ`; `momentum` / `nesterov` are FedAvgM
(Hsu et al. 2019) and `adam` is FedAdam (Reddi et al. 2021, "Adaptive Federated
Optimization"). They read only the released aggregate and their own state, so under
user-level DP they are post-processing: no privacy cost, whatever they do.

Sparse rows. A round's Δ of word-embedding tables is exactly zero on every row nobody
touched (without DP; or under DP with the noisy denominator, rows below the weight
threshold). Dense momentum would keep moving such a row along a stale direction for
~1/(1−β) rounds, and dense Adam would keep decaying its moments; so by default the stateful
optimisers are *lazy* (like TensorFlow's LazyAdam, PyTorch's SparseAdam): a row whose Δ
is exactly zero in every coordinate keeps its moments and does not move that round.
Under DP with the public denominator (and DP-FTRL) every row carries noise, no row is
zero, and lazy and dense coincide. `lazy=False` gives the papers' dense updates.

State: arrays the size of the tables (`state_arrays()`, keys "<slot>/<table>", plus 0-d
counters), to be stored in the checkpoint's .npz next to the tables and given back with
`load_state_arrays()` on resume; `sgd` has none.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from fedembed.errors import ConfigError
from fedembed.registry import Registry


class ServerOptimizer(Protocol):
    def step(self, tables: dict[str, np.ndarray], delta: dict[str, np.ndarray]) -> None:
        """Apply the round's aggregate to `tables`, in place."""
        ...

    def state_arrays(self) -> dict[str, np.ndarray]: ...

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None: ...


SERVER_OPTIMIZERS: Registry[type] = Registry("server optimizer")


def make(cfg) -> ServerOptimizer:
    """The scenario's server optimiser (`federation.server_optimizer`), with its hyperparameters."""
    return SERVER_OPTIMIZERS.get(cfg.federation.server_optimizer).from_config(cfg)


def touched_rows(d: np.ndarray) -> np.ndarray:
    """Rows of a table's Δ with any non-zero coordinate (what the lazy optimisers update)."""
    d = np.asarray(d)
    return d != 0 if d.ndim == 1 else np.any(d.reshape(d.shape[0], -1) != 0, axis=1)


def split_state(arrays: dict[str, np.ndarray], slot: str) -> dict[str, np.ndarray]:
    """The tables of one state slot ("momentum/in" → {"in": …})."""
    prefix = slot + "/"
    return {k[len(prefix):]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)}


def check(cfg) -> None:
    """federation.server_optimizer and its hyperparameters."""
    f = cfg.federation
    if f.server_optimizer not in SERVER_OPTIMIZERS:
        raise ConfigError(f"federation.server_optimizer: {f.server_optimizer!r} is not one of "
                          f"{sorted(SERVER_OPTIMIZERS)}")
    if not 0.0 <= f.server_momentum < 1.0:
        raise ConfigError(f"federation.server_momentum must be in [0, 1), got {f.server_momentum}")
    if not 0.0 <= f.server_beta2 < 1.0:
        raise ConfigError(f"federation.server_beta2 must be in [0, 1), got {f.server_beta2}")
    if not f.server_tau > 0.0:
        raise ConfigError(f"federation.server_tau must be > 0, got {f.server_tau}")


from fedembed.server_opt import adam, momentum, sgd  # noqa: E402,F401  (registration)
