"""`[vocab.discovery]` resolved: the rounds, each round's noise, the thresholds' knobs — and refused when wrong.

The noise. Each round r is a Gaussian mechanism of sensitivity 1 (a vote vector's L2 norm)
with noise multiplier z_r = z₀/√w_r: the trie levels share `trie_share` of the weights equally,
the refinement rounds the rest. Under RDP a Gaussian's cost is α/(2z²), so the rounds
together cost exactly one Gaussian of multiplier z₀ (Σ 1/z_r² = 1/z₀²); z₀ is the smallest
for which the accountant (the run's own: Opacus' RDP or PRV, with the rounds' Poisson rate q)
composes all the rounds to at most `epsilon` at the run's user-level δ. A trie that runs out
of prefixes early spends less: the ledger is charged only the rounds that ran.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fedembed.errors import ConfigError

MAX_VALUES = 1 << 24       # a round's vote vector: 16.7M values (64 MiB masked in a 32-bit ring) at most


@dataclass(frozen=True)
class DiscoveryParams:
    alphabet: str
    max_length: int
    chunks: tuple[int, ...]                # symbols each trie level adds
    refine_rounds: int
    noise_multipliers: tuple[float, ...]   # z of every round: the trie levels, then the refinement rounds
    sample_rate: float                     # q: each client votes in a round with this probability
    epsilon: float
    delta: float
    accountant: str
    max_prefixes: int
    prefix_false_positives: float
    candidate_false_positives: float
    false_positives: float

    @property
    def rounds(self) -> int:
        return len(self.noise_multipliers)


def chunks(first: int, chunk: int, max_length: int) -> tuple[int, ...]:
    """first, then chunk, …, until the depth reaches max_length."""
    rest = max(0, max_length - first)
    return (min(first, max_length),) + (chunk,) * (-(-rest // chunk))


def noise_multipliers(weights: list[float], epsilon: float, delta: float, sample_rate: float,
                      accountant: str = "rdp") -> tuple[float, ...]:
    """z_r = z₀/√w_r with the smallest z₀ (to 0.1 %) whose composition spends at most `epsilon`."""
    from fedembed.privacy.accountant import Accountant

    def spent(z0: float) -> float:
        history = [[z0 / math.sqrt(w), sample_rate, 1] for w in weights]
        return Accountant.from_dict({"kind": accountant, "history": history}).epsilon(delta)

    lo, hi = 0.0, 1.0
    while spent(hi) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise ConfigError(f"vocab.discovery.epsilon = {epsilon:g}: no noise is enough at δ = {delta:.3g}")
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if spent(mid) > epsilon else (lo, mid)
    return tuple(hi / math.sqrt(w) for w in weights)


def check(cfg) -> None:
    """Cross-field checks (cheap: the composition root runs them before anything else)."""
    if cfg.vocab.mode != "discovered":
        return
    d, n = cfg.vocab.discovery, cfg.partition.num_clients
    if not cfg.privacy.user_level:
        raise ConfigError("vocab.mode = \"discovered\" needs privacy.user_level = true: the discovery is "
                          "user-level DP charged to the same ledger as training, and training without user-level "
                          "DP would leave the run's privacy.epsilon meaningless")
    if cfg.privacy.mechanism == "ftrl_tree":
        raise ConfigError("vocab.mode = \"discovered\" charges its rounds to DP-FedAvg's RDP ledger; it is not "
                          "wired for privacy.mechanism = \"ftrl_tree\" (the tree's own accounting) yet")
    if cfg.privacy.noise_population:
        raise ConfigError("vocab.mode = \"discovered\" is not wired for research mode (privacy.noise_population): "
                          "its votes' noise is not scaled to a simulated deployment")
    if cfg.privacy.denominator == "public":
        raise ConfigError("vocab.mode = \"discovered\" rules out privacy.denominator = \"public\": its row "
                          "denominators come from public word counts, and no one reveals a count to the discovery "
                          "(its vocabulary has Zipf counts by rank)")
    if cfg.data.format == "devices":
        raise ConfigError("vocab.mode = \"discovered\" does not yet run with data.format = \"devices\" "
                          "(the nodes' own corpora): use a corpus the simulation partitions")
    if cfg.simulation.nodes:
        raise ConfigError("vocab.mode = \"discovered\" does not yet run on a pool of nodes: set simulation.nodes = 0")
    if not d.epsilon > 0:
        raise ConfigError(f"vocab.discovery.epsilon must be > 0, got {d.epsilon}")
    if cfg.privacy.target_epsilon > 0 and d.epsilon >= cfg.privacy.target_epsilon:
        raise ConfigError(f"vocab.discovery.epsilon ({d.epsilon:g}) must be below privacy.target_epsilon "
                          f"({cfg.privacy.target_epsilon:g}): the run's budget covers discovery and training")
    from fedembed.discovery.alphabet import Alphabet
    Alphabet(d.alphabet, d.max_length)
    for key in ("first_chunk", "chunk", "refine_rounds", "max_prefixes"):
        if getattr(d, key) < 1:
            raise ConfigError(f"vocab.discovery.{key} must be >= 1, got {getattr(d, key)}")
    if not 0.0 < d.trie_share < 1.0:
        raise ConfigError(f"vocab.discovery.trie_share must be in (0, 1), got {d.trie_share}")
    for key in ("prefix_false_positives", "candidate_false_positives", "false_positives"):
        if not getattr(d, key) > 0:
            raise ConfigError(f"vocab.discovery.{key} must be > 0, got {getattr(d, key)}")
    if not 0 <= d.clients_per_round <= n:
        raise ConfigError(f"vocab.discovery.clients_per_round must be in [0, partition.num_clients = {n}], "
                          f"got {d.clients_per_round}")
    k = len(d.alphabet)
    first = k ** d.first_chunk + sum(k ** j for j in range(1, d.first_chunk + 1))
    later = d.max_prefixes * (k ** d.chunk + sum(k ** j for j in range(1, d.chunk + 1)))
    if max(first, later) > MAX_VALUES:
        raise ConfigError(f"vocab.discovery: a trie level's vote vector would hold {max(first, later):,} values "
                          f"(alphabet of {k} symbols, first_chunk {d.first_chunk}, chunk {d.chunk}, max_prefixes "
                          f"{d.max_prefixes}), more than {MAX_VALUES:,}: lower them")


def headline_rate(cfg, q: float) -> float:
    """The sampling rate the headline ε may credit (fedembed.privacy.params.UserLevel.headline_rate):
    q against observers of the released output when a trusted server keeps the sample secret; 1
    under SecAgg+, whose server draws the voters (and the cohorts) itself."""
    from fedembed.privacy.params import TRUSTED, threat_model

    return q if threat_model(cfg) == TRUSTED else 1.0


def resolve(cfg) -> DiscoveryParams:
    """The discovery's rounds and noise for this scenario (check() has passed)."""
    from fedembed.privacy.params import delta

    d = cfg.vocab.discovery
    levels = chunks(d.first_chunk, d.chunk, d.max_length)
    weights = [d.trie_share / len(levels)] * len(levels) + [(1 - d.trie_share) / d.refine_rounds] * d.refine_rounds
    q = d.clients_per_round / cfg.partition.num_clients if d.clients_per_round else 1.0
    dl = delta(cfg)
    return DiscoveryParams(d.alphabet, d.max_length, levels, d.refine_rounds,
                           noise_multipliers(weights, d.epsilon, dl, headline_rate(cfg, q), cfg.privacy.accountant),
                           q, d.epsilon, dl,
                           cfg.privacy.accountant, d.max_prefixes, d.prefix_false_positives,
                           d.candidate_false_positives, d.false_positives)
