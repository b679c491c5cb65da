"""Checks of the [partition] keys the non-IID partitioners read, run by the composition root (fedembed/compose.py) before anything runs."""
from __future__ import annotations

import math

from fedembed.data.partition import labels
from fedembed.errors import ConfigError


def check(cfg) -> None:
    p = cfg.partition
    if not (p.alpha > 0 and math.isfinite(p.alpha)):
        raise ConfigError(f"partition.alpha must be a finite number > 0, got {p.alpha}")
    if not (p.sigma >= 0 and math.isfinite(p.sigma)) or p.sigma > 10:
        raise ConfigError(f"partition.sigma must be in [0, 10], got {p.sigma}")
    if not 0 <= p.vocab_skew <= 1:
        raise ConfigError(f"partition.vocab_skew must be in [0, 1], got {p.vocab_skew}")
    if p.topics < 1:
        raise ConfigError(f"partition.topics must be >= 1, got {p.topics}")
    labels.check(cfg)
