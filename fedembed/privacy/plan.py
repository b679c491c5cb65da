"""`fedembed plan`: what user-level DP will leave of the signal, predicted before any compute.

A round releases Σ_u clip_C(Δ_u) + N(0, (zC)²) on every coordinate. For a row r (a word) the
noise has norm σ_row = z·C·√D whatever the data; the signal is the sum over the round's users
holding r of their row updates. The prediction needs only what is public or cheap:

- z from the accountant: the run's ε, δ, rounds and (for DP-FedAvg) the sampling rate the
  headline may credit (fedembed/privacy/params.py), or DP-FTRL's tree (fedembed/privacy/ftrl.py);
- n_r = m·s_r, the expected holders of r in a cohort of m, s_r = 1 − exp(−c_r/N) from the
  public counts c_r (fedembed/privacy/public_rows.py's estimate);
- a_r, the norm a holder's clipped update puts on r, and ρ, how aligned the holders' row
  updates are, both from a probe: the first update of a few dozen users of the run's own data
  at the run's starting tables (their norms before clipping, the rows they touch, and how their
  updates to a shared row add up). A probe costs seconds; it reads data the server holds in a
  simulation, and its figures only inform the plan (they are not released).

SNR_r = ‖Σ of n_r row updates of norm a_r, alignment ρ‖ / (z·C·√D) per round (a row's vectors in
every table, D their total size); over T rounds a consistent signal grows as T and the
noise as √T, so the run's SNR is √T times that. Words are grouped in frequency bands; a band
whose run SNR is below 1 is mostly noise. The plan names the knob that lifts the band that
matters (by default the 1,000 most frequent words) to 1: the cohort, the population at the same
rate, the dimension, the rows released, or a warm start (which shrinks what must be learned).
`measured_snr` computes the same ratio from a released round (the trusted server holds the
noiseless sum), so the plan can be checked against runs (docs/BENCHMARKS.md, Privacy–utility).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BANDS = ((0, 100), (100, 1000), (1000, 10000), (10000, None))   # frequency ranks of the rows


def band_name(lo: int, hi: int | None) -> str:
    return f"{lo}-{hi}" if hi is not None else f"{lo}+"


def band_rows(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of each frequency band (by the public counts, most frequent first)."""
    order = np.argsort(-np.asarray(counts, dtype=np.float64), kind="stable")
    out = {}
    for lo, hi in BANDS:
        rows = order[lo:hi]
        if len(rows):
            out[band_name(lo, hi)] = rows
    return out


@dataclass
class Probe:
    """What a few users' first updates say: per row, mean clipped norm a holder puts on it, and alignment."""
    users: int
    update_norm: float                # median ‖Δ_u‖ before clipping
    rows_per_user: float              # mean rows a user's update touches (both tables)
    row_norm: np.ndarray              # [V] mean ‖clip(Δ_u)_r‖ over probe holders of r (0: no holder)
    alignment: float                  # ‖Σ_u Δ_u,r‖ / Σ_u ‖Δ_u,r‖ over rows held by several probe users
    holders: np.ndarray               # [V] probe users holding r


@dataclass
class Plan:
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    cohort: float
    rounds: int
    dim: int
    rows: int
    clip: float
    snr_round: dict[str, float] = field(default_factory=dict)     # band → median per-round SNR of its rows
    snr_run: dict[str, float] = field(default_factory=dict)
    knobs: list[str] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    largest_signal: float = 0.0      # m·C, the norm of the round's sum if every update were aligned
    noise_norm: float = 0.0          # the round's noise norm over every released value
    released: int = 0                # privacy.release_rows: rows past it keep their start (0: every row)
    model_dim: int = 0               # model.dim, a table's (0: unknown; `dim` is a row's across its tables)

    def verdict(self) -> str:
        bands = ", ".join(f"{b}: {v:.2g}" for b, v in self.snr_run.items())
        head = (f"plan: ε = {self.epsilon:.3g} (δ = {self.delta:.2g}) over {self.rounds} rounds → z = "
                f"{self.noise_multiplier:.3g}; a round's noise norm {self.noise_norm:.3g} against at most "
                f"{self.largest_signal:.3g} of signal (m·C); the run's signal-to-noise by word-frequency rank: {bands}")
        return head + (" — " + "; ".join(self.knobs) if self.knobs else "")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def expected_holders(counts: np.ndarray, population: int, cohort: float) -> np.ndarray:
    """n_r = m·(1 − exp(−c_r/N)): the expected users of a cohort of m whose data holds row r."""
    return cohort * (1.0 - np.exp(-np.asarray(counts, dtype=np.float64) / max(population, 1)))


def summed_norm(a: np.ndarray, n: np.ndarray, alignment: float) -> np.ndarray:
    """‖Σ of n row updates of norm a‖ when their mean direction carries a share `alignment` (c = ρ²)
    of their squared norm: a·√(n²c + n(1 − c)) — n·a if aligned, √n·a if independent."""
    c = alignment ** 2
    return a * np.sqrt(np.square(n) * c + n * (1.0 - c))


def predict(*, counts: np.ndarray, population: int, cohort: float, rounds: int, dim: int, clip: float,
            noise_multiplier: float, probe: Probe, tables: int = 2, epsilon: float, delta: float,
            sample_rate: float, target_band: str = "100-1000", run_noise_factor: float | None = None,
            released: int = 0, model_dim: int = 0) -> Plan:
    """The plan for a run of these numbers; see the module docstring. `run_noise_factor`: the
    noise the final tables keep in units of one round's (√T for DP-FedAvg; DP-FTRL's tree less).
    `released` K > 0 (privacy.release_rows): only the first K rows are noised and move; the probe's
    updates were zeroed past K before their clip, as the clients' are."""
    rows = len(counts)
    n_r = expected_holders(counts, population, cohort)
    held = probe.holders > 0
    a_r = np.where(held, probe.row_norm, np.median(probe.row_norm[held]) if held.any() else 0.0)
    noise_row = noise_multiplier * clip * math.sqrt(dim)
    plan = Plan(epsilon, delta, noise_multiplier, sample_rate, cohort, rounds, dim, rows, clip,
                largest_signal=cohort * clip,
                noise_norm=noise_multiplier * clip * math.sqrt(dim * min(rows, released or rows) * tables),
                released=released, model_dim=model_dim,
                probe={"users": probe.users, "update_norm": probe.update_norm, "rows_per_user": probe.rows_per_user,
                       "alignment": probe.alignment})
    grow = rounds / (run_noise_factor if run_noise_factor is not None else math.sqrt(rounds))
    for name, idx in band_rows(counts).items():
        signal = summed_norm(a_r[idx], n_r[idx], probe.alignment)
        if released:                     # rows past K are not released: no signal (and no noise) there
            signal = np.where(np.arange(rows)[idx] < released, signal, 0.0)
        snr = float(np.median(signal / noise_row)) if noise_row > 0 else math.inf
        plan.snr_round[name] = snr
        plan.snr_run[name] = snr * grow
    plan.knobs = knobs(plan, target_band)
    return plan


def knobs(plan: Plan, band: str) -> list[str]:
    """What would bring `band`'s run SNR to 1, each knob alone (SNR ∝ m, ∝ 1/z, ∝ 1/√D)."""
    snr = plan.snr_run.get(band)
    if snr is None or not math.isfinite(snr) or snr >= 1.0:
        return [f"the {band} band is above the noise"] if snr is not None and snr >= 1.0 else []
    need = 1.0 / max(snr, 1e-12)
    out = [f"to lift words ranked {band} to SNR 1: a cohort of {plan.cohort * need:,.0f} users a round "
           f"(×{need:.2g}; at the same rate q, a population ×{need:.2g})",
           f"or model.dim {max(1, int((plan.model_dim or plan.dim) / need ** 2))} (noise ∝ √D)"]
    if plan.rows > 1000 and not plan.released:
        out.append("or release fewer rows (privacy.release_rows = 1000: the rows past it keep their start, "
                   "and all of C goes to the rows that carry signal)")
    out.append("and a warm start (model.init = \"public\") leaves less to learn from the noisy rounds")
    return out


def measured_snr(sums: dict[str, np.ndarray], noise_std: float, counts: np.ndarray,
                 names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Per band, the median over its rows of ‖Σ_u clip(Δ_u)_r‖ / (σ·√D) for one released round: a row
    is its vectors in every row table of the noiseless sum (the trusted server holds it), D their size."""
    rows = [np.asarray(t, dtype=np.float64) for k, t in sorted(sums.items())
            if t.ndim == 2 and len(t) == len(counts) and (names is None or k in names)]
    if noise_std <= 0 or not rows:      # no noise, or no table indexed by the rows (a sentence adapter)
        return {}
    table = np.concatenate(rows, axis=1)
    scale = noise_std * math.sqrt(table.shape[1])
    return {name: float(np.median(np.linalg.norm(table[idx], axis=1) / scale))
            for name, idx in band_rows(counts).items()}
