"""User-level DP-FedAvg with a trusted server: clip each client's whole update, noise the sums.

What a client sends is one vector u = (w⊙Δ, β·w): its row-weighted table deltas and its
per-row weights (presence indicators, scaled by the public constant β = privacy.weight_scale).
`ClipUpdate` scales u as a whole so that ‖u‖₂ ≤ C. Adding or removing one client therefore
changes the summed vector (Σ w⊙Δ, Σ β·w) by at most C in L2 norm: the sensitivity is C, and
`CentralGaussian` adds N(0, (z·C)²) to every coordinate of both sums — one Gaussian mechanism
with noise multiplier z, which is exactly what the accountant composes (with q, the Poisson
sampling rate). Clipping tables and weights *jointly* (rather than each to C with the same z,
which would be a z/√2 mechanism) keeps the full z, and because the same factor scales a
client's delta and its weights, the noiseless ratio Σ s·w·Δ / Σ s·w is still a weighted mean.

Row-wise division under noise is post-processing: a row whose noisy weight sum is below
`min_weight` noise standard deviations is left unchanged (its ratio would be mostly noise;
an untouched row's noisy weight passes 3σ with probability 0.13 %); every other row is
divided by its noisy weight, which is then ≥ min_weight·σ > 0, so the division is safe.
β sets how C is shared: the weights take ≈ β²·n_rows of ‖u‖², the deltas the rest; the
error of a row ∝ (D + ‖Δ_row‖²/β²)(‖Δ‖²/n_rows + β²) is smallest near β = ‖Δ_row‖/D^¼,
about 0.1 for word vectors of D = 100 with row updates of norm ≈ 0.3-1.

With `privacy.denominator = "public"` the client sends no weights (zeros: the whole of C goes
to the deltas) and the server divides row r by a data-independent m·max(s_r, min_share)
from the public vocabulary counts (fedembed/privacy/public_rows.py) instead of the noisy
weight sum: every row moves every round, by its noised delta sum over the expected number
of clients that touch it. Same sensitivity C, same z, same ε.

Adaptive clipping (Andrew et al. 2021, "Differentially Private Learning with Adaptive
Clipping"): each client also sends b − ½, where b = 1 if its update's norm was ≤ C before
clipping; the server adds N(0, σ_b²) to their sum (sensitivity ½), estimates the unclipped
fraction b̄ = (Σ(b − ½) + noise)/m + ½ with m the expected number of clients, and sets
C ← C·exp(−η·(b̄ − γ)). Noising the update with z_Δ = (z⁻² − (2σ_b)⁻²)^−½ makes the pair
(update sum, bit sum) one Gaussian mechanism of multiplier z, which is what is accounted.
Flower's own helpers are used for that formula; its clipping and noise helpers are not:
they measure norms in float32 (a hard bound needs float64), divide by a zero norm, draw
noise from NumPy's global (seedable) RNG, and its adaptive step moves C the wrong way when
fed the *clipped* fraction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedembed.aggregate import divide_rows
from fedembed.errors import UpdateError
from fedembed.privacy.params import UserLevel, resolve
from fedembed.privacy.public_rows import public_denominator
from fedembed.privacy.sampling import secret_rng
from fedembed.updates import ClientUpdate

CLIP_BIT = "dp_unclipped"   # reply metric: +½ if the update's norm was ≤ C before clipping, else −½
_MARGIN = 1e-6              # clip to C·(1 − margin), so float32 rounding never exceeds C
_TOLERANCE = 1e-5           # the server's check allows this relative slack


def update_norm(tables: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> float:
    """‖(tables, weights)‖₂ over every array, accumulated in float64."""
    total = 0.0
    for a in (*tables.values(), *weights.values()):
        flat = np.asarray(a, dtype=np.float64).ravel()
        total += float(np.dot(flat, flat))
    return math.sqrt(total)


@dataclass(frozen=True)
class ClipUpdate:
    """Client stage: scale the weights by β (or zero them), then the whole (tables, weights) vector to norm ≤ C."""
    clip: float
    weight_scale: float
    send_bit: bool = False
    send_weights: bool = True      # False under the public denominator: the weights would only waste C

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        beta = self.weight_scale if self.send_weights else 0.0
        weights = {k: (w * beta).astype(np.float32) for k, w in update.weights.items()}
        norm = update_norm(update.tables, weights)
        scale = 1.0 if norm <= self.clip else self.clip * (1.0 - _MARGIN) / norm
        update.tables = {k: (t * scale).astype(np.float32) for k, t in update.tables.items()}
        update.weights = {k: (w * scale).astype(np.float32) for k, w in weights.items()}
        if self.send_bit:
            update.metrics[CLIP_BIT] = 0.5 if norm <= self.clip else -0.5
        return update

    def describe(self) -> str:
        what = f"the delta and β·weights (β = {self.weight_scale:g})" if self.send_weights else "the delta"
        bit = "; the clip bit for adaptive clipping" if self.send_bit else ""
        return f"clip (user-level DP): {what} jointly to L2 ≤ C = {self.clip:.4g}{bit}"


def client_stages(cfg) -> list[ClipUpdate]:
    """The client-side stages of user-level DP; `privacy.clip` is this round's C (the server sets it)."""
    p = cfg.privacy
    return [ClipUpdate(p.clip, p.weight_scale, p.adaptive_clip, p.denominator == "noisy")] if p.user_level else []


class CentralGaussian:
    """Server side: check the clip, noise the sums, divide row-wise, adapt C."""
    mechanism = "gaussian"

    def __init__(self, params: UserLevel, clip: float | None = None, rng: np.random.Generator | None = None,
                 denominator: np.ndarray | None = None):
        self.params = params
        self.clip = float(clip if clip is not None else params.clip)
        self.rng = rng if rng is not None else secret_rng()
        self.last: dict[str, float] = {}
        if params.denominator == "public" and denominator is None:
            raise ValueError("privacy.denominator = \"public\" needs the public vocabulary counts")
        self.denominator = denominator   # [V] row divisors under the public denominator, else None

    @classmethod
    def start(cls, cfg, saved: dict[str, Any] | None = None, rng: np.random.Generator | None = None,
              public_counts: np.ndarray | None = None) -> "CentralGaussian | None":
        """From the scenario, or from a checkpoint's state (same z and current C) on resume."""
        saved = saved or {}
        params = resolve(cfg, saved.get("noise_multiplier"))
        if params is None:
            return None
        denominator = None
        if params.denominator == "public" and public_counts is not None:
            denominator = public_denominator(public_counts, cfg.partition.num_clients, params.expected_clients,
                                             params.min_share)
        return cls(params, saved.get("clip"), rng, denominator)

    @property
    def noise_std(self) -> float:
        """z_Δ·C — scaled by m/m' in research mode, the noise a deployment's mean would carry."""
        return self.params.update_noise_multiplier * self.clip * self.params.noise_scale

    def next_charge(self, history=None) -> tuple[float, float]:
        """(z, q) of a round's charge: z at the sampling rate the headline may credit."""
        return self.params.noise_multiplier, self.params.headline_rate

    def check_reply(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                    metrics: dict[str, float]) -> None:
        """Refuse an unclipped update: the sensitivity, hence the guarantee, rests on it."""
        norm = update_norm(tables, weights)
        if not norm <= self.clip * (1.0 + _TOLERANCE):
            raise UpdateError(f"update norm {norm:.6g} exceeds the clipping bound C = {self.clip:.6g}")
        if self.params.adaptive and metrics.get(CLIP_BIT) not in (0.5, -0.5):
            raise UpdateError(f"adaptive clipping needs the {CLIP_BIT!r} metric to be ±0.5, "
                              f"got {metrics.get(CLIP_BIT)!r}")

    def check_sum(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                  metrics: dict[str, float], users: int) -> None:
        """Refuse a cohort's sum that `users` clipped updates cannot make (norm ≤ users·C, and a
        clip-bit sum within ±users/2). The node clips each user; the server can only bound the sum."""
        norm = update_norm(tables, weights)
        if not norm <= users * self.clip * (1.0 + _TOLERANCE):
            raise UpdateError(f"the sum of {users} updates has norm {norm:.6g}, more than {users} × C = "
                              f"{users * self.clip:.6g}")
        if self.params.adaptive and not abs(metrics.get(CLIP_BIT, math.inf)) <= users / 2:
            raise UpdateError(f"adaptive clipping needs the {CLIP_BIT!r} sum of {users} users within ±{users / 2:g}, "
                              f"got {metrics.get(CLIP_BIT)!r}")

    def add_noise(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each coordinate plus N(0, (z_Δ·C)²), in float64."""
        std = self.noise_std
        return {k: a + self.rng.normal(0.0, std, a.shape) if std > 0 else a.astype(np.float64)
                for k, a in arrays.items()}

    def noisy_mean(self, sums: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Σ w⊙Δ + noise over (Σ β·w + noise)/β, row by row; rows below the threshold stay unchanged.

        Under the public denominator: (Σ Δ + noise) / d_r for every row (the weights are not read)."""
        if self.denominator is not None:
            return divide_rows(self.add_noise(sums), {k: self.denominator for k in sums})
        threshold = self.params.min_weight * self.noise_std
        kept = {k: np.where(w >= threshold, w, 0.0) / self.params.weight_scale
                for k, w in self.add_noise(weights).items()}
        return divide_rows(self.add_noise(sums), kept)

    def adapt(self, bit_sum: float) -> None:
        """Andrew et al.'s geometric step toward the target quantile, from the noisy bit sum."""
        p = self.params
        self.last = {"clip": self.clip, "noise_std": self.noise_std}
        if not p.adaptive:
            return
        noisy = bit_sum + (self.rng.normal(0.0, p.bit_stddev) if p.bit_stddev > 0 else 0.0)
        unclipped = noisy / p.expected_clients + 0.5
        self.clip *= math.exp(-p.clip_lr * (unclipped - p.target_quantile))
        self.last.update(unclipped_fraction=unclipped, next_clip=self.clip)

    def round_params(self) -> dict[str, float | str]:
        """The round's mechanism parameters, for the ledger (after `adapt`)."""
        p = self.params
        out: dict[str, float | str] = {"noise_multiplier": p.noise_multiplier, "sample_rate": p.sample_rate,
                                       "clip": self.last.get("clip", self.clip),
                                       "noise_std": self.last.get("noise_std", self.noise_std),
                                       "weight_scale": p.weight_scale, "accountant": p.accountant,
                                       "denominator": p.denominator}
        if p.adaptive:
            out.update(update_noise_multiplier=p.update_noise_multiplier, bit_stddev=p.bit_stddev,
                       **{k: v for k, v in self.last.items() if k in ("unclipped_fraction", "next_clip")})
        return out

    def state(self) -> dict[str, float]:
        return {"noise_multiplier": self.params.noise_multiplier, "clip": self.clip}
