"""DP-FTRL with tree aggregation as the user-level mechanism of a run (`privacy.mechanism = "ftrl_tree"`).

The round loop sees the same hooks as for DP-FedAvg (`CentralGaussian`, fedembed/privacy/user_dp.py):
clients clip their updates to C exactly as there; the server releases the round through
`noisy_mean`, which here adds the round's sum to the binary tree of noise (fedembed/privacy/tree.py:
the tables become w₀ + Σ increments = w₀ + noisy prefix sum) and divides row by row by the
*public* denominator (per-round noisy weights would break the tree's cancellation); who takes
part each round is the fixed public schedule (fedembed/privacy/schedule.py), not secret sampling.

Accounting (fedembed/privacy/tree_accounting.py): the whole run is one Gaussian mechanism of
μ² = max over clients of Σ_nodes n²/z², n the client's rounds under a node; each round charges the
ledger the q = 1 Gaussian step that brings its RDP to exactly μ² of what has been released so far,
so the budget check previews the next round's true cost and ε needs no amplification. The noise
comes from the trusted server (the tree's seed is in the checkpoint: keep it private), so the
guarantee is stated against whoever sees the released tables; against the server, none.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedembed.aggregate import divide_rows
from fedembed.privacy import tree_accounting as ta
from fedembed.privacy.params import UserLevel, default_delta, sample_rate
from fedembed.privacy.public_rows import public_denominator
from fedembed.privacy.schedule import Schedule, schedule_for
from fedembed.privacy.tree import TreeAggregator
from fedembed.privacy.user_dp import update_norm
from fedembed.errors import UpdateError

MECHANISM = "ftrl-tree"
_TOLERANCE = 1e-5


def resolve(cfg, saved_z: float | None = None) -> tuple[UserLevel, Schedule, float]:
    """The run's parameters, its schedule and the tree's sensitivity factor; z is derived from
    `target_epsilon` against that factor (no amplification), or taken as given / as saved."""
    p, n = cfg.privacy, cfg.partition.num_clients
    schedule = schedule_for(cfg)
    factor = ta.sensitivity_factor(schedule, cfg.federation.rounds, p.restart_every)
    d = p.delta or default_delta(n)
    if saved_z is not None:
        z = float(saved_z)
    elif p.target_epsilon > 0:
        z = ta.noise_multiplier_for(p.target_epsilon, d, factor, p.accountant)
    else:
        z = p.noise_multiplier
    m = cfg.federation.clients_per_round or n
    params = UserLevel(noise_multiplier=z, sample_rate=sample_rate(cfg), delta=d, clip=p.clip, expected_clients=m,
                       update_noise_multiplier=z, bit_stddev=0.0, weight_scale=p.weight_scale,
                       min_weight=p.min_weight, adaptive=False, target_quantile=p.target_quantile,
                       clip_lr=p.clip_lr, accountant=p.accountant, budget=p.max_epsilon or p.target_epsilon,
                       denominator="public", min_share=p.min_share, threat_model="trusted-server")
    return params, schedule, factor


class TreeGaussian:
    """Server side of DP-FTRL: check the clip, add the round to the tree, divide by the public denominator."""
    mechanism = MECHANISM

    def __init__(self, cfg, params: UserLevel, schedule: Schedule, factor: float, denominator: np.ndarray,
                 saved: dict[str, Any] | None, shapes: dict[str, tuple[int, ...]]) -> None:
        self.params, self.schedule, self.factor = params, schedule, factor
        self.restart_every = cfg.privacy.restart_every
        self.clip = params.clip
        self.denominator = denominator
        tree_state = (saved or {}).get("tree")
        self.tree = (TreeAggregator.from_state(shapes, tree_state) if tree_state
                     else TreeAggregator(shapes, params.noise_multiplier * params.clip,
                                         restart_every=self.restart_every))
        self.last: dict[str, float] = {}

    @classmethod
    def start(cls, cfg, saved: dict[str, Any] | None, public_counts: np.ndarray | None,
              shapes: dict[str, tuple[int, ...]]) -> "TreeGaussian":
        saved = saved or {}
        params, schedule, factor = resolve(cfg, saved.get("noise_multiplier"))
        if public_counts is None:
            raise ValueError("privacy.mechanism = \"ftrl_tree\" needs the public vocabulary counts")
        denominator = public_denominator(public_counts, cfg.partition.num_clients, params.expected_clients,
                                         params.min_share)
        return cls(cfg, params, schedule, factor, denominator, saved, shapes)

    @property
    def noise_std(self) -> float:
        return self.params.noise_multiplier * self.clip

    def clients(self, step: int) -> list[int]:
        """Who takes part in released round `step` (1-based): the public schedule."""
        return self.schedule.clients(step)

    def next_charge(self, history) -> tuple[float, float]:
        """(z, q) the ledger is charged for the next release: what brings its RDP to the tree's μ²."""
        step = self.tree.steps + 1
        return ta.charge(history, ta.mu_squared(self.schedule, step, self.restart_every, self.params.noise_multiplier))

    def check_reply(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                    metrics: dict[str, float]) -> None:
        norm = update_norm(tables, weights)
        if not norm <= self.clip * (1.0 + _TOLERANCE):
            raise UpdateError(f"update norm {norm:.6g} exceeds the clipping bound C = {self.clip:.6g}")

    def check_sum(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                  metrics: dict[str, float], users: int) -> None:
        norm = update_norm(tables, weights)
        if not norm <= users * self.clip * (1.0 + _TOLERANCE):
            raise UpdateError(f"the sum of {users} updates has norm {norm:.6g}, more than {users} × C")

    def noisy_mean(self, sums: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The tree's noisy increment for this round, row by row over the public denominator (the
        weights are not read: the clients send none under the public denominator)."""
        increment = self.tree.add(sums)
        return divide_rows(increment, {k: self.denominator for k in increment})

    def adapt(self, bit_sum: float) -> None:
        self.last = {"clip": self.clip, "noise_std": self.noise_std}

    def round_params(self) -> dict[str, float | str]:
        p = self.params
        return {"noise_multiplier": p.noise_multiplier, "clip": self.clip, "noise_std": self.noise_std,
                "tree_step": self.tree.steps, "restart_every": self.restart_every,
                "sensitivity_factor": self.factor, "accountant": p.accountant, "denominator": "public"}

    def state(self) -> dict[str, Any]:
        """For the checkpoint: z, C and the tree (its secret seed included: the checkpoint is private)."""
        return {"noise_multiplier": self.params.noise_multiplier, "clip": self.clip, "tree": self.tree.state()}


def epsilon_of_run(cfg) -> float:
    """ε the whole run spends (for `fedembed plan` and the docs): one Gaussian of μ = factor/z."""
    params, _, factor = resolve(cfg)
    return math.inf if params.noise_multiplier == 0 else ta.epsilon(params.noise_multiplier, factor, params.delta,
                                                                     params.accountant)
