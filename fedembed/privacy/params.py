"""User-level DP's numbers, resolved from the scenario — and refused, before any training, when wrong.

`check` runs when the composition root validates a scenario (fedembed/compose.py: cheap
checks only, before anything else); `resolve` runs once when the server starts and may search for the noise multiplier
that meets `privacy.target_epsilon`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from fedembed.errors import ConfigError


@dataclass(frozen=True)
class UserLevel:
    noise_multiplier: float          # z: what the accountant composes (covers the adaptive-clip bit too)
    sample_rate: float               # q: probability that a given client takes part in a round
    delta: float
    clip: float                      # C (the starting value under adaptive clipping)
    expected_clients: float          # q·N, public; the denominator of the noisy unclipped fraction
    update_noise_multiplier: float   # z_Δ on the update sums; = z without adaptive clipping
    bit_stddev: float                # σ_b on the sum of centred clip bits; 0 without adaptive clipping
    weight_scale: float              # β
    min_weight: float                # row threshold, in noise standard deviations
    adaptive: bool
    target_quantile: float
    clip_lr: float
    accountant: str                  # "rdp" | "prv"
    budget: float                    # ε the run may spend; 0 = no budget
    denominator: str = "noisy"       # "noisy" | "public" (fedembed/privacy/public_rows.py)
    min_share: float = 0.05          # the public denominator's floor
    threat_model: str = "trusted-server"   # whom the headline ε is stated against (`threat_model`)
    noise_scale: float = 1.0         # research mode: the noise added is z·C·noise_scale (m/m' of the deployment)
    simulated: bool = False          # research mode (privacy.noise_population): ε is the simulated deployment's
    deployment: dict | None = None   # research mode: the population and cohort the noise is scaled to

    @property
    def headline_rate(self) -> float:
        """The sampling rate the headline ε may credit: q against observers of the released tables
        (a trusted server keeps the sample secret), 1 against a server that picks the cohort; in
        research mode, the simulated deployment's m'/N'."""
        if self.deployment is not None:
            return float(self.deployment["sample_rate"])
        return self.sample_rate if self.threat_model == TRUSTED else 1.0


TRUSTED, UNTRUSTED = "trusted-server", "untrusted-server"


def threat_model(cfg) -> str:
    """The weakest trust the run asks for. Central noise (SecAgg+ off) trusts the server: it sees
    each update and adds the noise, so ε is stated against whoever sees the released tables, with
    the amplification of a sample the server keeps secret. Distributed noise under SecAgg+ does not
    trust the server — but the server draws the cohort, so against it no amplification holds."""
    return UNTRUSTED if cfg.secagg.enabled else TRUSTED


def sample_rate(cfg) -> float:
    """q = clients_per_round / num_clients: each client is drawn independently with this probability."""
    k = cfg.federation.clients_per_round
    return 1.0 if k == 0 else k / cfg.partition.num_clients


def default_delta(num_clients: int) -> float:
    """min(10⁻⁶, N^−1.1): far below 1/N (so that "publish one client's data" is not (ε, δ)-DP),
    and never the loose 6·10⁻³ that N^−1.1 alone gives at N = 100."""
    return min(1e-6, num_clients ** -1.1)


def delta(cfg) -> float:
    """δ as given, or `default_delta` when left at 0."""
    return cfg.privacy.delta or default_delta(cfg.partition.num_clients)


def bit_stddev(cfg) -> float:
    """σ_b, the noise std on the sum of the centred clip bits (adaptive clipping)."""
    expected = sample_rate(cfg) * cfg.partition.num_clients
    return cfg.privacy.clip_count_stddev or expected / 20.0  # Andrew et al. 2021's default, m/20


def _check_adaptive_noise(cfg, z: float) -> None:
    sb = bit_stddev(cfg)
    if cfg.privacy.adaptive_clip and z > 0 and z >= 2 * sb:
        raise ConfigError(
            f"privacy.adaptive_clip: noise_multiplier {z:.4g} must be below 2·clip_count_stddev = {2 * sb:.4g} "
            f"(the clip bit takes its share of the noise: z_update = (z⁻² − (2σ_b)⁻²)^−½); "
            f"raise privacy.clip_count_stddev or the number of clients per round")


def check(cfg) -> None:
    """Cross-field checks of [privacy]; ranges and choices are checked by config.check."""
    p, n = cfg.privacy, cfg.partition.num_clients
    if not p.user_level:
        for key, on in (("noise_multiplier", p.noise_multiplier > 0), ("target_epsilon", p.target_epsilon > 0),
                        ("adaptive_clip", p.adaptive_clip), ("max_epsilon", p.max_epsilon > 0),
                        ("noise_population", p.noise_population > 0)):
            if on:
                raise ConfigError(f"privacy.{key} needs privacy.user_level = true: noise without clipping "
                                  f"bounds nothing (record-level DP has its own [privacy.record] settings)")
        return
    if cfg.federation.aggregate != "rowwise" or cfg.federation.row_weight != "presence":
        raise ConfigError("privacy.user_level needs bounded per-row weights: set federation.aggregate = "
                          "\"rowwise\" and federation.row_weight = \"presence\" (count weights are unbounded "
                          "and FedAvg weighs a whole update by its client's example count)")
    if p.noise_multiplier > 0 and p.target_epsilon > 0:
        raise ConfigError("privacy: give noise_multiplier or target_epsilon, not both")
    if p.delta >= 1.0 / n:
        raise ConfigError(f"privacy.delta ({p.delta:g}) must be below 1/num_clients = {1.0 / n:g}: with δ ≥ 1/N "
                          f"a mechanism that publishes one client's data outright is (0, δ)-DP")
    if not 0.0 < p.min_share <= 1.0:
        raise ConfigError(f"privacy.min_share must be in (0, 1], got {p.min_share}")
    if not 0.0 <= p.target_quantile <= 1.0:
        raise ConfigError(f"privacy.target_quantile must be in [0, 1], got {p.target_quantile}")
    if p.noise_population or p.noise_cohort:
        m = sample_rate(cfg) * n
        if not p.noise_population:
            raise ConfigError("privacy.noise_cohort needs privacy.noise_population (the deployment it belongs to)")
        if p.noise_population < n:
            raise ConfigError(f"privacy.noise_population ({p.noise_population}) must be at least partition.num_clients "
                              f"({n}): it scales the noise to a larger deployment than the one simulated")
        if p.noise_cohort and not m <= p.noise_cohort <= p.noise_population:
            raise ConfigError(f"privacy.noise_cohort must be between the simulated cohort ({m:g}) and "
                              f"privacy.noise_population ({p.noise_population}), got {p.noise_cohort}")
        if cfg.secagg.enabled or p.mechanism != "fedavg":
            raise ConfigError("privacy.noise_population (research mode) scales a trusted server's DP-FedAvg noise: "
                              "set secagg.enabled = false and privacy.mechanism = \"fedavg\"")
    if p.max_epsilon > 0 and p.noise_multiplier == 0 and p.target_epsilon == 0:
        raise ConfigError("privacy.max_epsilon: with noise_multiplier = 0 (clipping only) ε is infinite and "
                          "the budget would stop the run before its first round; set a noise_multiplier")
    _check_adaptive_noise(cfg, p.noise_multiplier)


def resolve(cfg, noise_multiplier: float | None = None) -> UserLevel | None:
    """The resolved mechanism, or None when user-level DP is off.

    `noise_multiplier` (from a checkpoint) overrides the scenario's: a z derived from
    target_epsilon for the original number of rounds stays the same when a resumed run
    asks for more rounds; the budget then stops it instead.
    """
    p = cfg.privacy
    if not p.user_level:
        return None
    check(cfg)
    q, d = sample_rate(cfg), delta(cfg)
    threat = threat_model(cfg)
    q_headline = q if threat == TRUSTED else 1.0      # what target_epsilon is met against
    scale, deployment = 1.0, None
    if p.noise_population:   # research mode: z and ε of a deployment of N' users, cohorts of m'
        n_dep = p.noise_population
        m_dep = p.noise_cohort or q * n_dep
        q_headline, scale = m_dep / n_dep, q * cfg.partition.num_clients / m_dep
        d = p.delta or default_delta(n_dep)
        deployment = {"population": n_dep, "cohort": m_dep, "sample_rate": q_headline}
    if noise_multiplier is not None:
        z = float(noise_multiplier)
    elif p.target_epsilon > 0:
        from opacus.accountants.utils import get_noise_multiplier

        with warnings.catch_warnings():  # the search's large trial z put RDP's optimum at the last order
            warnings.simplefilter("ignore", UserWarning)
            z = float(get_noise_multiplier(target_epsilon=p.target_epsilon, target_delta=d, sample_rate=q_headline,
                                           steps=cfg.federation.rounds, accountant=p.accountant))
    else:
        z = p.noise_multiplier
    _check_adaptive_noise(cfg, z)
    bit_sd, z_update = 0.0, z
    if p.adaptive_clip and z > 0:
        from flwr.supercore.differential_privacy import compute_adaptive_noise_params

        bit_sd, z_update = compute_adaptive_noise_params(z, q * cfg.partition.num_clients, bit_stddev(cfg))
    return UserLevel(noise_multiplier=z, sample_rate=q, delta=d, clip=p.clip,
                     expected_clients=q * cfg.partition.num_clients, update_noise_multiplier=float(z_update),
                     bit_stddev=float(bit_sd), weight_scale=p.weight_scale, min_weight=p.min_weight,
                     adaptive=p.adaptive_clip, target_quantile=p.target_quantile, clip_lr=p.clip_lr,
                     accountant=p.accountant, budget=p.max_epsilon or p.target_epsilon,
                     denominator=p.denominator, min_share=p.min_share, threat_model=threat,
                     noise_scale=scale, simulated=bool(p.noise_population), deployment=deployment)
