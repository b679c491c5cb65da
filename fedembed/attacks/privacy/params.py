"""`[privacy_attacks]`, checked with the scenario before anything runs (the composition root, fedembed/compose.py, calls `check`)."""
from __future__ import annotations

from fedembed.errors import ConfigError

_AT_LEAST = {"canaries": 1, "canary_length": 2, "canary_repetitions": 1, "candidates": 1, "members": 2,
             "non_members": 2}


def enabled(cfg) -> list[str]:
    """Names of the attacks the scenario turns on."""
    a = cfg.privacy_attacks
    return [n for n in ("vocab_inference", "membership", "canary") if getattr(a, n)]


def check(cfg) -> None:
    a, key = cfg.privacy_attacks, "privacy_attacks"
    for name, least in _AT_LEAST.items():
        if getattr(a, name) < least:
            raise ConfigError(f"{key}.{name} must be >= {least}, got {getattr(a, name)}")
    if not 0.0 < a.confidence < 1.0:  # also refuses NaN
        raise ConfigError(f"{key}.confidence must be in (0, 1), got {a.confidence}")
    if not 0 <= a.target_client < cfg.partition.num_clients:
        raise ConfigError(f"{key}.target_client ({a.target_client}) must be a client id in "
                          f"[0, partition.num_clients = {cfg.partition.num_clients})")
