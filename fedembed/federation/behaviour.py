"""Simulated client behaviour: dropouts and stragglers, reproducible from (seed, round, partition).

A sampled client drops out of a round with probability `behaviour.dropout`: it trains
nothing and answers with an error whose reason says so (the server counts it under
`dropped`). Independently, with probability `behaviour.straggler_fraction` it is slow: it
trains, then waits `behaviour.straggler_delay` seconds before replying, so it misses the
round when that passes `federation.round_timeout` (counted under `timed_out`). Every draw
comes from its own seeded stream per (seed, round, partition, stage), so a run, a resumed
run and a rerun see the same clients drop. Under secure aggregation the dropout happens in
the stage that trains (SecAgg+'s `mask`, which calls train_round) and the protocol counts it
as that stage's dropout; `secagg.drop_<stage>` (fedembed/secagg) drops clients at the others.
"""
from __future__ import annotations

import math
import time
import zlib
from typing import Any

import numpy as np

from fedembed.errors import ConfigError, FedembedError

DROPPED = "dropped out (behaviour.dropout)"
ERROR_CODE = 4601   # the Error code of a dropout reply


class Dropped(FedembedError):
    """The simulated client left the round; client/app.py turns this into an error reply."""


def _rng(cfg, rnd: int, partition: int, stage: str) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, rnd, partition, zlib.crc32(stage.encode()), 0xB7])


def drops(cfg, rnd: int, partition: int, stage: str = "train") -> bool:
    p = cfg.behaviour.dropout
    return p > 0 and bool(_rng(cfg, rnd, partition, stage).random() < p)


def delay(cfg, rnd: int, partition: int) -> float:
    """Seconds this client waits before replying in this round (0 unless it straggles)."""
    b = cfg.behaviour
    if b.straggler_fraction <= 0 or b.straggler_delay <= 0:
        return 0.0
    return b.straggler_delay if _rng(cfg, rnd, partition, "straggle").random() < b.straggler_fraction else 0.0


def start(cfg, rnd: int, partition: int) -> float:
    """Called before local training: raises `Dropped`, or returns the delay to apply after it."""
    if drops(cfg, rnd, partition):
        raise Dropped(f"partition {partition} {DROPPED} in round {rnd}")
    return delay(cfg, rnd, partition)


def finish(seconds: float) -> None:
    """The straggler's wait, after training (so it adds to the real compute time)."""
    if seconds > 0:
        time.sleep(seconds)


def round_counts(cfg, rnd: int, clients: list[int], failures: list[str], missing: int) -> dict[str, Any]:
    """metrics.jsonl fields: dropouts seen (error replies that say so), replies the deadline cut
    off, and how many sampled clients the simulation made slow this round (whether or not late)."""
    out: dict[str, Any] = {"dropped": sum(DROPPED in f for f in failures), "timed_out": int(missing)}
    if cfg.behaviour.straggler_fraction > 0:
        out["stragglers"] = sum(delay(cfg, rnd, p) > 0 and not drops(cfg, rnd, p) for p in clients)
    return out


def check(cfg) -> None:
    b = cfg.behaviour
    for key in ("dropout", "straggler_fraction", "straggler_delay"):
        v = getattr(b, key)
        if not (v >= 0 and math.isfinite(v)):
            raise ConfigError(f"behaviour.{key} must be a finite number >= 0, got {v}")
    if b.dropout >= 1:
        raise ConfigError(f"behaviour.dropout must be below 1 (a probability; 1 leaves no client), got {b.dropout}")
    if b.straggler_fraction > 1:
        raise ConfigError(f"behaviour.straggler_fraction must be in [0, 1], got {b.straggler_fraction}")
    if b.straggler_fraction > 0 and b.straggler_delay == 0:
        raise ConfigError("behaviour.straggler_delay: stragglers need a delay in seconds "
                          f"(behaviour.straggler_fraction is {b.straggler_fraction})")
