"""User-level DP under secure aggregation: the clients add the Gaussian noise, in shares.

With `secagg.enabled` and `privacy.user_level`, the server is not trusted with the noise:
each client asked to mask in a round adds N(0, σ²/(f − 1)) to every coordinate of its clipped
update (tables and β-weights, ‖u‖₂ ≤ C) *before* quantization, σ = z·C, where f is the round's
survivor floor (fedembed/secagg/params.py `survivor_floor`): the round is unmasked only if at
least f masked vectors arrived, and aborts otherwise. Then

  * quantization is subtractively dithered (fedembed/secagg/quantize.py): client i sends
    q_i = ⌊s·(u_i + n_i) + d_i⌋ with d_i ~ U[0,1)^d from a key the server learns after the
    fact, and the server computes Σ q_i − Σ d_i + m'/2 = s·(Σ u_i + Σ n_i) + E, where E's
    coordinates are sums of independent U(−½, ½] errors *independent of the data*
    (Schuchman 1964). Adding data-independent noise is post-processing, so the released
    sum is at least as private as Σ u_i + N(0, σ²·m'/(f − 1)), m' the clients whose masked
    vector arrived;
  * the ring cannot wrap on the sum except with probability below 10^−30 per coordinate
    (12 σ of headroom, fedembed/secagg/quantize.py) — folded into δ, it is negligible;
  * no single party sees un-noised data: the server sees only masked vectors and their
    noised sum; a client sees only its own update.

Which noise to account: the released sum with the target client carries m' shares; the
neighbouring run without it carries m' − 1. The guarantee must hold for both, so the round is
charged the weaker, z_eff = z·√((m' − 1)/(f − 1)), which is ≥ z for every round that is
unmasked (m' ≥ f). The pre-round budget check can therefore preview z: a round with dropouts
is charged at least as much noise as previewed, so a run never ends above its budget. The
price is noise: with nobody dropping out the sum carries σ²·m/(f − 1), e.g. 1.43 σ² for m = 10
and the default `secagg.max_dropout` = 0.2 (f = 8).

Whom the guarantee is stated against (fedembed/privacy/params.py `threat_model`): the server
draws the cohort, so against it no amplification by sampling holds (q = 1, the run's headline
ε); against whoever sees only the released tables, the sample is secret and q is credited
(the ledger's "released-tables" view). The clip is the client's own (the server cannot check a
masked update's norm): clients are trusted to run the protocol (semi-honest model).
"""
from __future__ import annotations

import math

import numpy as np

from fedembed.updates import ClientUpdate

MECHANISM = "distributed-gaussian"


class NoiseShare:
    """Client stage, after the range clip and before quantization: this client's share of the
    round's Gaussian noise, N(0, σ²/m) on every table and weight value and N(0, σ_b²/m) on the
    extra values (the adaptive-clipping bit), on the flat vector (fedembed/secagg/stages.py)."""

    def __init__(self, std: float, bit_std: float, weight_end: int, rng: np.random.Generator | None = None) -> None:
        self.std, self.bit_std, self.end, self.rng = std, bit_std, weight_end, rng

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        x, end = update.vector, self.end
        rng = self.rng or np.random.default_rng()
        if self.std > 0:
            x[:end] += rng.normal(0.0, self.std, end)
        if self.bit_std > 0 and end < x.size:
            x[end:] += rng.normal(0.0, self.bit_std, x.size - end)
        return update

    def describe(self) -> str:
        bit = f", N(0, {self.bit_std:.4g}²) on the clip bit" if self.bit_std > 0 else ""
        return f"noise share (distributed DP): N(0, {self.std:.4g}²) on every value{bit}"


def share_std(noise_std: float, floor: int) -> float:
    """σ_i = σ/√(floor − 1): what each client adds, so that the sum of any `floor` survivors carries
    at least σ² of noise even without the target client's own share (see the module docstring)."""
    return noise_std / math.sqrt(max(floor - 1, 1))


def effective_multiplier(z: float, survivors: int, floor: int) -> float:
    """z_eff = z·√((m′ − 1)/(floor − 1)): the noise of the released sum in the neighbouring run
    without the target (m′ − 1 shares), the weaker of the two; ≥ z whenever m′ ≥ floor."""
    return z * math.sqrt(max(survivors - 1, 0) / max(floor - 1, 1))


class _Presummed:
    """A view of a `CentralGaussian` whose noise is already in the sums: the same row-wise
    division and thresholds (so it follows that class), no noise added by the server."""

    def __init__(self, user, noise_std: float) -> None:
        self.params, self.denominator, self.noise_std = user.params, user.denominator, noise_std

    def add_noise(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(a, dtype=np.float64) for k, a in arrays.items()}


def noisy_mean(user, sums: dict[str, np.ndarray], weights: dict[str, np.ndarray], survivors: int,
               floor: int) -> dict[str, np.ndarray]:
    """The row-wise mean of sums that already carry the clients' noise (std σ·√(m′/(floor − 1)))."""
    std = user.noise_std * math.sqrt(survivors / max(floor - 1, 1))
    return type(user).noisy_mean(_Presummed(user, std), sums, weights)


class _NoNoise:
    """Stands in for a generator whose normal draws are all 0: the noise is already in the sum."""

    @staticmethod
    def normal(loc: float = 0.0, scale: float = 1.0, size=None):
        return loc if size is None else np.full(size, loc)


def adapt(user, bit_sum: float) -> None:
    """Adaptive clipping's step from a clip-bit sum that already carries the clients' noise
    shares (std σ_b·√(m'/m)): `CentralGaussian.adapt`, without its own draw."""
    rng, user.rng = user.rng, _NoNoise()
    try:
        user.adapt(bit_sum)
    finally:
        user.rng = rng
