"""DP-FTRL's privacy accounting: the whole tree release as one Gaussian mechanism, no amplification.

**The mechanism.** Every released node of every tree (fedembed/privacy/tree.py: node s of a
tree covers its rounds (s − lowbit(s), s]) is the sum of the clipped updates (‖u‖₂ ≤ C) of
the rounds it covers plus fresh N(0, σ²) per coordinate, σ = z·C, and everything the server
publishes — each round's increment, hence the tables — is computed from those node values
and public data. Zeroing out one client's data changes a node by at most C·n, n the number
of that client's participations under the node, so the vector of all nodes moves by at
most C·√(Σ_nodes n²): with a fixed schedule the whole run is *one* Gaussian mechanism with
μ = factor/z, factor = √(max over clients of Σ_nodes n(client, node)²). Restarts add their
trees' nodes to the same sum (the max is taken of the total, not per tree). The worst case
is real: a client whose updates are all equal achieves it.

**ε.** From μ alone: the analytic Gaussian curve (Balle & Wang 2018, "exact"), or Opacus'
RDP / PRV accountant with one step of multiplier 1/μ at sample rate q = 1 — *no
amplification*, since nothing about participation is secret. The ledger can keep composing
round by round: μ² of the first t steps is nondecreasing in t, and a step of multiplier
(μ_t² − μ_{t−1}²)^−½ at q = 1 adds exactly the difference in RDP (α·μ²/2 is additive), so the
ledger's ε after round t is the ε of everything released so far (`charge`).

**Adjacency.** Zero-out (a client's data replaced by nothing, its place in the schedule
kept: Kairouz et al. 2021's "replace with a special record", dp-accounting's
REPLACE_SPECIAL), because a cohort schedule built by shuffling N clients would reshuffle
everyone if a client were added. For `EveryRound` this is the same as add/remove.

**Threat model, central noise (`TreeAggregator`).** The server is trusted: it sees the raw
sums and holds the noise seed. The guarantee — (ε, δ)-DP at user level for the schedule —
holds against everyone who sees what the server releases: the tables of every round (sent
to clients, exported, served) and anything computed from them. It needs no secret
sampling (the schedule may be public) but it does need the schedule to be fixed in
advance: a server that picks participants from their updates is outside it. The
checkpoint holds the seed and is as private as the server's memory.

**SecAgg+ (distributed noise).** The server must then learn only masked sums, so the
clients add the noise. A node's noise spans rounds, and round t's increment needs
+ξ_t − Σ ξ_j of earlier nodes j: only the parties who added ξ_j can subtract it. That works
when the *same* clients take part in every round of a tree (`EveryRound`, cross-silo):
each client keeps its own tree of shares (std σ/√m, its own secret seed,
`tree.ClientShare`) and adds its share's increment before masking. The clients H that
added their share in every released step of a tree so far contribute exactly a tree of
std σ·√(|H|/m); what the other clients added is independent of the data (post-processing),
so each tree is charged z_eff = z·√(|H|/m) (`distributed.effective_multiplier`), with the
per-tree factors (`mu_squared` with a list of multipliers). With cohorts (a different set
of clients each round) it does not compose: round t's clients cannot subtract noise that
another cohort added, and fresh per-round noise is plain DP-FedAvg without amplification.
Against a server that colludes with c clients, their shares are known: z·√((|H| − c)/m).
But that regime is where the tree gains nothing: with every client in every round a node
of length L holds L of a client's rounds, factor² ≈ T·R (½ to 1.5 times it) with restarts
every R, and the tables' noise is smallest at R = 1 — fresh noise each round, which is
distributed DP-FedAvg at q = 1. The tree pays off when a client's rounds are sparse in it (cohorts,
ideally one participation per tree), and that needs the noise from a trusted party.
Dithered quantization and the ring's headroom are as in fedembed/privacy/distributed.py,
except that a share's increment has std up to σ/√m·√(⌊log₂ T⌋ + 1) (the ring must fit it).

**Choosing restart_every.** Restarts lower the sensitivity (fewer of a client's rounds per
node) but each tree leaves its last prefix noise in the tables (`tree.final_noise_factor`).
Kairouz et al.'s setting is cohorts with a restart every epoch (restart_every = P): each
client once per tree, factor² = (trees)·⌈log₂(P + 1)⌉, which is what dp-accounting's
`SingleEpochTreeAggregationDpEvent` accounts and what the tests cross-check.

**Adaptive clipping** (Andrew et al. 2021) composes when C changes only at restarts (a
node's sum must be in one C's units): the clip bits are one more Gaussian query per
participation (sensitivity ½, noise σ_b), so the whole run has
μ² = max_c [Σ n²/z_Δ² + k_c/(2σ_b)²]; `adaptive_update_multiplier` picks z_Δ for a target z.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from fedembed.errors import ConfigError
from fedembed.privacy.accountant import Accountant
from fedembed.privacy.schedule import Explicit, Schedule
from fedembed.privacy.tree import covering_nodes

MECHANISMS = ("fedavg", "ftrl_tree")
ACCOUNTANTS = ("rdp", "prv", "exact")
History = list[tuple[float, float, int]]


def _as_schedule(schedule: Schedule | Sequence[Sequence[int]]) -> Schedule:
    return schedule if hasattr(schedule, "patterns") else Explicit(schedule)  # type: ignore[arg-type]


def _position(step: int, restart_every: int) -> tuple[int, int]:
    return (0, step) if restart_every == 0 else ((step - 1) // restart_every, (step - 1) % restart_every + 1)


def _tree_length(tree: int, steps: int, restart_every: int) -> int:
    """Steps of tree `tree` released among the first `steps`."""
    return steps if restart_every == 0 else min(restart_every, steps - tree * restart_every)


def node_counts(pattern: Iterable[int], steps: int, restart_every: int = 0) -> dict[tuple[int, int], int]:
    """n(node) for one client: how many of its participations (≤ steps) each released node holds;
    nodes are (tree, last round within the tree)."""
    if restart_every < 0:
        raise ValueError(f"restart_every must be >= 0, got {restart_every}")
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for r in pattern:
        if not 1 <= r <= steps:
            continue
        tree, s = _position(r, restart_every)
        for node in covering_nodes(s, _tree_length(tree, steps, restart_every)):
            counts[(tree, node)] += 1
    return dict(counts)


def _per_tree_squares(pattern: Iterable[int], steps: int, restart_every: int) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for (tree, _), n in node_counts(pattern, steps, restart_every).items():
        out[tree] += n * n
    return dict(out)


def sensitivity_factor(schedule: Schedule | Sequence[Sequence[int]], steps: int, restart_every: int = 0) -> float:
    """√(max over clients of Σ_nodes n²): the L2 sensitivity of everything the first `steps`
    steps release, in units of C (the same noise σ in every tree)."""
    pats = _as_schedule(schedule).patterns(steps)
    return math.sqrt(max((sum(_per_tree_squares(p, steps, restart_every).values()) for p in pats), default=0))


tree_sensitivity_factor = sensitivity_factor   # the name issue 18's plan uses


def mu_squared(schedule: Schedule | Sequence[Sequence[int]], steps: int, restart_every: int,
               z: float | Sequence[float], bit_stddev: float = 0.0) -> float:
    """μ² of the first `steps` steps: max over clients of Σ_trees Σ n²/z_tree² (+ k/(2σ_b)² for
    k clip bits, one per participation, with adaptive clipping).

    `z` is the node noise multiplier (σ/C), or one per tree (distributed noise whose
    surviving share differs per tree). ∞ when some tree the client is in has no noise."""
    pats = _as_schedule(schedule).patterns(steps)
    best = 0.0
    for p in pats:
        total = 0.0
        for tree, sq in _per_tree_squares(p, steps, restart_every).items():
            zt = float(z if isinstance(z, (int, float)) else z[tree])
            total += math.inf if zt == 0 else sq / (zt * zt)
        if bit_stddev > 0:
            total += len(p) / (2.0 * bit_stddev) ** 2
        best = max(best, total)
    return best


def _exact_epsilon(mu: float, delta: float) -> float:
    """ε of the Gaussian mechanism of sensitivity/σ = μ at δ: the root of
    δ(ε) = Φ(μ/2 − ε/μ) − e^ε·Φ(−μ/2 − ε/μ) (Balle & Wang 2018, Theorem 8), in log space."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    def log_delta(eps: float) -> float:
        a = norm.logcdf(mu / 2 - eps / mu)
        b = eps + norm.logcdf(-mu / 2 - eps / mu)
        return a + math.log1p(-math.exp(b - a)) if b < a else -math.inf

    target = math.log(delta)
    if log_delta(0.0) <= target:
        return 0.0
    hi = 1.0
    while log_delta(hi) > target:
        hi *= 2
        if hi > 1e6:
            return math.inf
    return float(brentq(lambda e: log_delta(e) - target, 0.0, hi, xtol=1e-12, rtol=1e-12))


def gaussian_epsilon(mu: float, delta: float, accountant: str = "rdp") -> float:
    """ε at δ of one Gaussian mechanism with μ = sensitivity/σ, no amplification (q = 1)."""
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; choose one of {list(ACCOUNTANTS)}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if mu == 0:
        return 0.0
    if math.isinf(mu):
        return math.inf
    if accountant == "exact":
        return _exact_epsilon(mu, delta)
    acc = Accountant(accountant)
    acc.step(1.0 / mu, 1.0)
    return acc.epsilon(delta)


def epsilon(z: float, factor: float, delta: float, accountant: str = "rdp") -> float:
    """ε of a DP-FTRL run with node noise multiplier z and sensitivity factor `factor`."""
    if z < 0 or factor < 0:
        raise ValueError(f"z and factor must be >= 0, got z={z}, factor={factor}")
    if factor == 0:
        return 0.0
    return gaussian_epsilon(math.inf if z == 0 else factor / z, delta, accountant)


def noise_multiplier_for(target_epsilon: float, delta: float, factor: float, accountant: str = "rdp",
                         rtol: float = 1e-6) -> float:
    """The smallest node noise multiplier z (to relative `rtol`) with ε(z, factor) ≤ target_epsilon.

    ε depends on z/factor only, so this searches μ = factor/z once (bisection in log μ)."""
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")
    if factor == 0:
        return 0.0
    lo, hi = 0.5, 1.0           # μ, bracketed so that ε(lo) ≤ target < ε(hi)
    while gaussian_epsilon(hi, delta, accountant) <= target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e8:
            return 0.0
    while gaussian_epsilon(lo, delta, accountant) > target_epsilon:
        lo, hi = lo / 2, lo
        if lo < 1e-8:
            raise ValueError(f"ε ≤ {target_epsilon:g} at δ = {delta:g} is out of the {accountant} "
                             f"accountant's reach")
    while hi / lo > 1 + rtol:
        mid = math.sqrt(lo * hi)
        if gaussian_epsilon(mid, delta, accountant) <= target_epsilon:
            lo = mid
        else:
            hi = mid
    return factor / lo


def adaptive_update_multiplier(z: float, factor: float, bit_releases: int, bit_stddev: float) -> float:
    """z_Δ for the tree's update noise so that the tree (factor/z_Δ) and `bit_releases` noisy clip
    bits per client (sensitivity ½, std σ_b) together are μ ≤ factor/z; Andrew et al.'s split
    (z⁻² − (2σ_b)⁻²)^−½ when factor = 1 and one bit."""
    if z <= 0 or factor <= 0:
        return z
    rest = (factor / z) ** 2 - bit_releases / (2.0 * bit_stddev) ** 2
    if not rest > 0:
        raise ValueError(f"the clip bits alone (σ_b = {bit_stddev:g}, {bit_releases} per client) exceed μ = "
                         f"{factor / z:.4g}; raise privacy.clip_count_stddev")
    return factor / math.sqrt(rest)


def spent_mu_squared(history: History) -> float:
    """μ² already charged to a ledger accountant by `charge` (its q = 1 entries: Σ steps/z²)."""
    total = 0.0
    for z, q, steps in history:
        if q == 1.0 and steps > 0:
            total += math.inf if z == 0 else steps / (z * z)
    return total


def charge(history: History, mu2_now: float) -> tuple[float, float]:
    """(noise multiplier, sample rate) to pass to `Ledger.spend`/`preview` so that the accountant
    holds μ² = mu2_now: a q = 1 Gaussian step of the difference, or (1, 0) — nothing — when
    μ² did not grow (it is never refunded)."""
    spent = spent_mu_squared(history)
    if math.isinf(mu2_now):
        return (0.0, 1.0) if not math.isinf(spent) else (1.0, 0.0)
    d = mu2_now - spent
    if not d > 1e-12 * max(1.0, mu2_now):
        return (1.0, 0.0)
    return (1.0 / math.sqrt(d), 1.0)


def check(cfg) -> None:
    """[privacy] mechanism and restart_every, and what DP-FTRL needs of the rest of the scenario."""
    p = cfg.privacy
    if p.mechanism not in MECHANISMS:
        raise ConfigError(f"privacy.mechanism: {p.mechanism!r} is not one of {list(MECHANISMS)}")
    if p.restart_every < 0:
        raise ConfigError(f"privacy.restart_every must be >= 0, got {p.restart_every}")
    if p.mechanism != "ftrl_tree":
        if p.restart_every:
            raise ConfigError("privacy.restart_every applies only to privacy.mechanism = \"ftrl_tree\"")
        return
    if not p.user_level:
        raise ConfigError("privacy.mechanism = \"ftrl_tree\" needs privacy.user_level = true")
    if p.denominator != "public":
        raise ConfigError("privacy.mechanism = \"ftrl_tree\" needs privacy.denominator = \"public\": the tree's "
                          "noise cancels only in a linear sum of rounds, which dividing each round by its own "
                          "noisy weights breaks")
    if p.adaptive_clip and p.restart_every == 0:
        raise ConfigError("privacy.adaptive_clip with privacy.mechanism = \"ftrl_tree\" needs "
                          "privacy.restart_every > 0: C may change only when a tree restarts")
    n, m = cfg.partition.num_clients, cfg.federation.clients_per_round
    if cfg.secagg.enabled and 0 < m < n:
        raise ConfigError("privacy.mechanism = \"ftrl_tree\" with secagg.enabled needs "
                          "federation.clients_per_round = 0: clients can add a tree's noise only if the same "
                          "clients take part in every round (or turn secagg off for a trusted server's noise)")

