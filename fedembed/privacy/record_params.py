"""Record-level DP-SGD's numbers (`[privacy.record]`): checked with the scenario, resolved per client.

`check` runs when the composition root validates a scenario, so a wrong combination is refused before any
training. `resolve` runs on the client, because the sampling rate q = expected_batch / n
depends on how many samples (sentences or documents) that client holds, and so does the
noise multiplier derived from a target ε. As in Opacus, n is treated as public.

A σ derived from `target_epsilon` is a plan for the whole run (every remaining round, every
step); it is kept from round to round while the plan still fits the target, and re-derived
for the remaining steps from what the client's accountant has already spent whenever it no
longer does (federation.rounds raised on resume, or a client whose n changed): the target
is never exceeded. When nothing is left to spend the client refuses to train.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from fedembed.errors import ConfigError

UNITS = ("sentence", "document")
ACCOUNTANTS = ("rdp", "prv")


@dataclass(frozen=True)
class DPSGDParams:
    sample_rate: float        # q: each sample joins a step's batch independently with this probability
    clip: float               # C: bound on one sample's gradient norm, both tables together
    noise_multiplier: float   # σ: the summed gradient gets N(0, σ²C²) on every coordinate
    expected_batch: float     # q·n, what the noisy sum is divided by
    steps: int                # DP-SGD steps per round (local_epochs / q)
    delta: float
    accountant: str


def check(cfg) -> None:
    """Ranges, choices and combinations of [privacy.record]."""
    r = cfg.privacy.record
    key = "privacy.record"
    if r.unit not in UNITS:
        raise ConfigError(f"{key}.unit: {r.unit!r} is not one of {list(UNITS)}")
    if r.accountant not in ACCOUNTANTS:
        raise ConfigError(f"{key}.accountant: {r.accountant!r} is not one of {list(ACCOUNTANTS)}")
    for name in ("expected_batch", "clip"):
        if not getattr(r, name) > 0:
            raise ConfigError(f"{key}.{name} must be > 0, got {getattr(r, name)}")
    for name in ("noise_multiplier", "target_epsilon"):
        if not getattr(r, name) >= 0:  # also refuses NaN
            raise ConfigError(f"{key}.{name} must be >= 0, got {getattr(r, name)}")
    if not 0 < r.delta < 1:
        raise ConfigError(f"{key}.delta must be in (0, 1), got {r.delta}")
    if not r.enabled:
        for name in ("noise_multiplier", "target_epsilon"):
            if getattr(r, name) > 0:
                raise ConfigError(f"{key}.{name} needs {key}.enabled = true (otherwise no sample is clipped "
                                  f"or noised and the run would not be private)")
        return
    if (r.noise_multiplier > 0) == (r.target_epsilon > 0):
        raise ConfigError(f"{key}: give exactly one of noise_multiplier or target_epsilon (> 0)")


def resolve(cfg, num_samples: int, noise_multiplier: float | None = None,
            history: list[tuple[float, float, int]] | None = None) -> DPSGDParams:
    """This client's DP-SGD parameters for the coming round.

    `noise_multiplier` and `history` come from the client's saved accountant state: the σ it
    used so far and the (σ, q, steps) it has spent. With an explicit privacy.record.noise_multiplier
    a saved σ is kept as it is. With target_epsilon, σ assumes the client trains in every
    remaining round (federation.rounds·steps minus the steps already spent, at least one
    round's), so its ε stays at most the target however it is sampled; a saved σ is kept only
    if that plan still fits, otherwise σ is re-derived for the remaining steps.
    """
    r, t = cfg.privacy.record, cfg.train
    if num_samples < 1:
        raise ConfigError("record-level DP: this client holds no sample")
    if r.delta >= 1.0 / num_samples:
        raise ConfigError(f"privacy.record.delta ({r.delta:g}) must be below 1/n = {1.0 / num_samples:g} for this "
                          f"client's n = {num_samples} {r.unit}s: with δ ≥ 1/n, publishing one sample outright is "
                          f"(0, δ)-DP")
    q = min(1.0, r.expected_batch / num_samples)
    steps = max(1, round(t.local_epochs / q))
    if r.target_epsilon > 0:
        noise_multiplier = _planned_sigma(cfg, q, steps, noise_multiplier, history or [])
    elif noise_multiplier is None:
        noise_multiplier = r.noise_multiplier
    return DPSGDParams(sample_rate=q, clip=r.clip, noise_multiplier=float(noise_multiplier),
                       expected_batch=q * num_samples, steps=steps, delta=r.delta, accountant=r.accountant)


def _planned_sigma(cfg, q: float, steps: int, saved: float | None,
                  history: list[tuple[float, float, int]]) -> float:
    """σ for the rest of the run under privacy.record.target_epsilon (see `resolve`)."""
    from fedembed.privacy.accountant import epsilon_after, remaining_noise_multiplier

    r = cfg.privacy.record
    history = [(float(z), float(p), int(n)) for z, p, n in history]
    done = sum(n for _, _, n in history)
    remaining = max(steps, steps * cfg.federation.rounds - done)
    if not history:
        return _sigma_for(r.target_epsilon, r.delta, q, remaining, r.accountant)
    if saved is not None and epsilon_after(history, saved, q, remaining, r.delta, r.accountant) <= r.target_epsilon:
        return float(saved)
    try:
        return remaining_noise_multiplier(history, q, remaining, r.target_epsilon, r.delta, r.accountant)
    except ValueError as exc:
        raise ConfigError(f"privacy.record.target_epsilon = {r.target_epsilon:g} leaves no room for "
                          f"federation.rounds = {cfg.federation.rounds}: this client has taken {done} DP-SGD steps "
                          f"already ({exc}); raise privacy.record.target_epsilon or lower federation.rounds") from None


@functools.lru_cache(maxsize=64)
def _sigma_for(epsilon: float, delta: float, q: float, steps: int, accountant: str) -> float:
    """Opacus' search (what `make_private_with_epsilon` runs): a σ whose ε after `steps` is at most the
    target (and within 0.01 of it)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=q, steps=steps,
                                      accountant=accountant))
