"""`[secagg]`'s numbers resolved for a round — and refused, before anything runs, when wrong.

Auto values (0 in the scenario): with user-level DP every coordinate of a clipped update is
within ±C, so the ranges are C and 20 bits are plenty (the step C/2^19 is far below the DP
noise). Without DP the deltas are clipped to ±64 (a row's delta over a round stays far below
that) and the weights are bounded by 1 (presence) or `federation.max_row_weight` (count
weights, capped: 255 by default), so the ranges are 64·bound and bound, and a 32-bit ring
holds them at up to 24 bits (a step of 64·255/2^23 ≈ 2·10^−3 for capped counts, far below a
row's weighted delta). Uncapped count weights (`max_row_weight = 0`) reach 10^4 on a large
row while a rare row's is ~10^−2, so the ranges are 2^20 and 40 bits (a step of 2^−19 ≈
2·10^−6): a 64-bit ring, twice the bytes and mask work of the 32-bit one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fedembed.errors import ConfigError
from fedembed.privacy.params import bit_stddev
from fedembed.secagg import graph
from fedembed.secagg.quantize import ring_bits
from fedembed.secagg.tally import names_for

STAGES = ("keys", "share", "mask", "unmask")   # where a test client may be told to drop out


@dataclass(frozen=True)
class RoundParams:
    bits: int
    table_range: float
    weight_range: float
    ring: int
    degree: int          # k: neighbours per client
    threshold: int       # t: shares needed to reconstruct a client's secret (holders = neighbours + itself)
    min_clients: int


def _bounded_weights(cfg) -> bool:
    """Presence weights (0/1 per row) or capped count weights: the weights are at most
    `_weight_bound` and the tables that times a delta (each clipped to ±64)."""
    f = cfg.federation
    return f.aggregate == "rowwise" and (f.row_weight == "presence" or f.max_row_weight > 0)


def _weight_bound(cfg) -> float:
    return 1.0 if cfg.federation.row_weight == "presence" else cfg.federation.max_row_weight


def bits(cfg) -> int:
    s = cfg.secagg
    if s.bits:
        return s.bits
    if cfg.privacy.user_level:
        return 20
    if _bounded_weights(cfg):   # as many as a 32-bit ring holds for the federation, at most 24
        return max(8, min(24, 31 - math.ceil(math.log2(cfg.partition.num_clients + 1))))
    return 40


def ranges(cfg, clip: float | None = None) -> tuple[float, float]:
    s = cfg.secagg
    if cfg.privacy.user_level:
        default = (clip if clip is not None else cfg.privacy.clip,) * 2
    elif _bounded_weights(cfg):
        default = (64.0 * _weight_bound(cfg), _weight_bound(cfg))
    else:
        default = (2.0 ** 20, 2.0 ** 20)
    return s.clip_range or default[0], s.weight_range or default[1]


def noise_levels(cfg, clip: float | None = None) -> float:
    """The largest std of the summed DP noise, in quantization levels (for the ring's headroom)."""
    if not cfg.privacy.user_level:
        return 0.0
    z = cfg.privacy.noise_multiplier or (cfg.privacy.target_epsilon and 50.0) or 0.0  # target ε: assume z ≤ 50
    c = clip if clip is not None else cfg.privacy.clip
    levels = 2 ** (bits(cfg) - 1) - 1
    bit_sd = bit_stddev(cfg) if cfg.privacy.adaptive_clip else 0.0   # the clip bit's noise, in the ±1 range
    return max(z * c * levels / min(ranges(cfg, clip)), bit_sd * levels)


def degree(cfg, n: int) -> int:
    k = cfg.secagg.neighbours or graph.auto_degree(n)
    return max(0, min(k + (k % 2), n - 1))


def threshold(cfg, k: int) -> int:
    return max(1, math.ceil(cfg.secagg.threshold * (k + 1)))


def survivor_floor(cfg, m: int) -> int:
    """The fewest masked updates a round of `m` sharing clients unmasks: `secagg.min_clients`, and
    under distributed DP also ⌈(1 − secagg.max_dropout)·m⌉ (at least 2), which the clients' noise
    shares are calibrated for (fedembed/privacy/distributed.py): fewer survivors abort the round."""
    if not cfg.privacy.user_level:
        return cfg.secagg.min_clients
    return max(2, cfg.secagg.min_clients, math.ceil((1.0 - cfg.secagg.max_dropout) * m - 1e-9))


def for_round(cfg, n: int, clip: float | None = None) -> RoundParams:
    k = degree(cfg, n)
    b = bits(cfg)
    ring = ring_bits(b, max(n, 1), noise_levels(cfg, clip))
    if ring is None:
        raise ConfigError(f"secagg.bits = {b} with {n} clients does not fit a 64-bit ring; lower secagg.bits")
    t_range, w_range = ranges(cfg, clip)
    return RoundParams(b, t_range, w_range, ring, k, threshold(cfg, k), cfg.secagg.min_clients)


def check(cfg) -> None:
    """Cross-field checks of [secagg] (cheap: the composition root runs it before anything else)."""
    s = cfg.secagg
    if not s.enabled:
        return
    if not 2 <= bits(cfg) <= 62:
        raise ConfigError(f"secagg.bits must be between 2 and 62, got {s.bits}")
    if not 0.5 < s.threshold <= 1.0:
        raise ConfigError(f"secagg.threshold must be in (0.5, 1] (a fraction of each client's share holders; "
                          f"at most half would let a server that lies about dropouts unmask a client), "
                          f"got {s.threshold}")
    for key in ("clip_range", "weight_range"):
        if getattr(s, key) < 0:
            raise ConfigError(f"secagg.{key} must be >= 0 (0 = auto), got {getattr(s, key)}")
    if s.neighbours < 0 or s.neighbours % 2:
        raise ConfigError(f"secagg.neighbours must be an even number >= 0 (0 = auto), got {s.neighbours}")
    if s.min_clients < 1:
        raise ConfigError(f"secagg.min_clients must be >= 1, got {s.min_clients}")
    if not 0.0 <= s.max_dropout < 1.0:   # also refuses NaN
        raise ConfigError(f"secagg.max_dropout must be in [0, 1) (the share of a round's clients that may drop "
                          f"after sharing and still leave the noise complete), got {s.max_dropout}")
    for stage in STAGES:
        p = getattr(s, f"drop_{stage}")
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"secagg.drop_{stage} must be a probability in [0, 1], got {p}")
    if ring_bits(bits(cfg), cfg.partition.num_clients, noise_levels(cfg)) is None:
        raise ConfigError(f"secagg.bits = {bits(cfg)} with {cfg.partition.num_clients} clients overflows a "
                          f"64-bit ring; lower secagg.bits")


def describe_client(cfg, n: int, user=None) -> list[str]:
    """The SecAgg+ stages' lines for a round of `n` clients (`user`: the resolved user-level
    mechanism, when its z is known before the run)."""
    p = for_round(cfg, n, user.clip if user is not None else None)
    t_range, w_range = p.table_range, p.weight_range
    lines = ["flatten: the tables, their per-row weights" + (" and the clip bit" if cfg.privacy.adaptive_clip else "")
             + " as one vector", f"range clip: tables to ±{t_range:g}, weights to ±{w_range:g}"]
    if cfg.privacy.user_level:
        z = f" with z = {user.noise_multiplier:.4g}" if user is not None else ""
        lines.append(f"noise share (distributed DP): N(0, (z·C)²/m) on every value{z}, "
                     f"m = the round's clients that shared keys")
    sums = names_for(cfg.privacy.user_level, cfg.privacy.record.enabled)
    if sums:
        lines.append(f"tally: {', '.join(sums)} as exact sums under the masks (not sent in the clear)")
    dither = "subtractively dithered" if cfg.privacy.user_level else "stochastic rounding"
    lines += [f"quantize: {p.bits} bits, {dither}, into Z_2^{p.ring}",
              f"mask (SecAgg+): self mask + pairwise masks with k = {p.degree} neighbours, threshold t = {p.threshold}"]
    return lines
