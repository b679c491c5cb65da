"""Adversarial clients, one attack per file, registered by name (`adversary.attack`).

Which partitions are malicious is fixed for the whole run and drawn from the scenario's seed
(`malicious_partitions`), so each client decides from its own partition id whether it attacks;
the server is not told. An attack is a client stage `ClientUpdate -> ClientUpdate` that runs on
the trained delta Δ and the rule's per-row weights before `weight_rows` and the protocol's other
stages (fedembed.compose.client_stages): the attacker crafts what it sends but still speaks the
protocol, so its update is masked under secure aggregation and clipped where clipping happens
on the client. That is the optimistic case for client-side defences (see norm_bound.py).
"""
from __future__ import annotations

import numpy as np

from fedembed.errors import ConfigError
from fedembed.registry import Registry

ADVERSARIES: Registry[type] = Registry("attack")
NONE = "none"
SYBIL_BASES = ("targeted_poison", "gaussian_noise")
_STREAM = 0xAD7E  # separates the malicious draw from every other use of the seed


def malicious_partitions(cfg) -> frozenset[int]:
    """The malicious partition ids: round(fraction · num_clients) of them (≥ 1 when fraction > 0)."""
    a, n = cfg.adversary, cfg.partition.num_clients
    if a.attack == NONE or a.fraction <= 0:
        return frozenset()
    m = min(n, max(1, int(round(a.fraction * n))))
    rng = np.random.default_rng([cfg.seed, _STREAM])
    return frozenset(int(p) for p in rng.choice(n, size=m, replace=False))


def boost(cfg) -> float:
    """adversary.scale, or num_clients / malicious: what makes the malicious share of a mean ≈ 1
    (Bagdasaryan et al.'s model replacement, assuming every client weighs about the same)."""
    if cfg.adversary.scale > 0:
        return float(cfg.adversary.scale)
    return cfg.partition.num_clients / max(1, len(malicious_partitions(cfg)))


class Attack:
    """What every attack stage shares: the line `--dry-run` prints for it."""
    what = ""          # one phrase: what the malicious client sends instead of its honest update

    def __init__(self, cfg, ctx) -> None:
        self.cfg, self.ctx = cfg, ctx

    def describe(self) -> str:
        return describe(self.cfg) or ""


def describe(cfg) -> str | None:
    """The adversary stage's line for a scenario (None when no client is malicious)."""
    if cfg.adversary.attack == NONE or not malicious_partitions(cfg):
        return None
    return (f"adversary {cfg.adversary.attack!r} (simulation only; {len(malicious_partitions(cfg))} of "
            f"{cfg.partition.num_clients} clients): {ADVERSARIES.get(cfg.adversary.attack).what}")


def stages(cfg, ctx) -> list:
    """The attack's stage for this client, or none (honest client, no attack, or no context)."""
    if ctx is None or ctx.partition_id not in malicious_partitions(cfg):
        return []
    return [ADVERSARIES.get(cfg.adversary.attack)(cfg, ctx)]


def check(cfg) -> None:
    """`[adversary]` keys, each refusal naming the key."""
    a = cfg.adversary
    if a.attack != NONE and a.attack not in ADVERSARIES:
        raise ConfigError(f"adversary.attack: {a.attack!r} is not one of {sorted([NONE, *ADVERSARIES])}")
    if not 0.0 <= a.fraction <= 1.0:  # also refuses NaN
        raise ConfigError(f"adversary.fraction must be in [0, 1], got {a.fraction}")
    for key in ("scale", "noise_std"):
        if not getattr(a, key) >= 0:
            raise ConfigError(f"adversary.{key} must be >= 0, got {getattr(a, key)}")
    if not a.strength > 0:
        raise ConfigError(f"adversary.strength must be > 0, got {a.strength}")
    if a.sybil_base not in SYBIL_BASES:
        raise ConfigError(f"adversary.sybil_base: {a.sybil_base!r} is not one of {sorted(SYBIL_BASES)}")
    targeted = a.attack == "targeted_poison" or (a.attack == "sybil" and a.sybil_base == "targeted_poison")
    if targeted and not (a.target and a.toward):
        raise ConfigError(f"adversary.target and adversary.toward must name two vocabulary words for "
                          f"adversary.attack = {a.attack!r}")
    if (a.target or a.toward) and a.target == a.toward:
        raise ConfigError(f"adversary.target and adversary.toward are the same word {a.target!r}")


from fedembed.attacks.adversaries import (  # noqa: E402,F401  (registration)
    gaussian_noise, scaling, sign_flip, sybil, targeted_poison)
