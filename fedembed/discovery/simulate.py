"""The discovery protocol on a population of word sets, without Flower: tests and benchmarks.

Each round sums the clients' vote vectors (votes.Population, vectorised) and adds the
Gaussian noise a trusted server or the clients' shares would add, N(0, z_r²) per slot; which
clients vote is a Poisson draw at the params' rate. Everything else is the server's real code
(protocol.py), so what this finds is what a federation with these clients would find, up to
quantization and dropouts.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedembed.discovery import protocol
from fedembed.discovery.alphabet import Alphabet
from fedembed.discovery.domain import Domain
from fedembed.discovery.params import DiscoveryParams
from fedembed.discovery.protocol import DiscoveryState
from fedembed.discovery.votes import Population


def discover(population: Population, params: DiscoveryParams, rng: np.random.Generator,
             state: DiscoveryState | None = None,
             on_round: Callable[[Domain, float], None] | None = None) -> DiscoveryState:
    """Every remaining round of the protocol; the state holds the discovered words and what was spent.
    `on_round(domain, z)`: sees every round's candidates (benchmarks time a client on them)."""
    state = state or DiscoveryState()
    while not state.done:
        dom = protocol.domain(state, params)
        z = protocol.noise_multiplier(state, params)
        if on_round is not None:
            on_round(dom, z)
        voters = rng.random(population.size) < params.sample_rate if params.sample_rate < 1 else None
        noisy = population.vote_sum(dom, voters) + rng.normal(0.0, z, dom.size)
        n = population.size if voters is None else int(voters.sum())
        protocol.absorb(state, params, dom, noisy, z, {"noise_multiplier": z, "sample_rate": params.sample_rate,
                                                       "voters": n})
    return state


@dataclass(frozen=True)
class Quality:
    """Precision and recall of a discovered vocabulary against the words held by ≥ k clients."""
    k: int
    truth: int                 # words held by ≥ k clients
    votable_truth: int         # those the alphabet and max_length allow
    found: int
    recall: float              # of the words held by ≥ k clients
    precision: float           # share of the found words held by ≥ k clients
    precision_real: float      # share of the found words held by at least one client (no noise-made words)
    fewest_holders: int        # the fewest clients holding a found word (0: a noise-made word)


def quality(found: list[str], holders: dict[str, int], k: int, alphabet: Alphabet) -> Quality:
    truth = {w for w, c in holders.items() if c >= k}
    hits = sum(1 for w in found if w in truth)
    return Quality(k, len(truth), sum(1 for w in truth if alphabet.votable(w)), len(found),
                   hits / len(truth) if truth else 1.0, hits / len(found) if found else 1.0,
                   sum(1 for w in found if holders.get(w, 0) > 0) / len(found) if found else 1.0,
                   min((holders.get(w, 0) for w in found), default=0))
