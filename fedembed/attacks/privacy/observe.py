"""What the server sees from the target client, for attacks that read one client's update.

The run's observer (`FirstRound`, registered through fedembed/observe.py) keeps what the
server actually received from the target in round 1: the plain update, or under SecAgg+ the
masked ring vector. Where that is missing (the target was not sampled in round 1, the run
was resumed after it, or its upload was sparse), the update is replayed: round 1 starts from
the initial tables (a function of the public seed), the client's training seed is
SeedSequence([seed, round, client]) and its pipeline's stages are deterministic, so on the
plain path the replay is exactly the reply the server got (record-level DP draws fresh
secret noise: the same distribution). The masked view of a plain update is built by
fedembed.secagg's own stages (`UpdateViews.mask`), never by hand.
"""
from __future__ import annotations

import numpy as np

from fedembed.attacks.privacy import AttackContext
from fedembed.errors import FedembedError
from fedembed.observe import Observation


def plain_and_masked(ctx: AttackContext, client: int) -> tuple[Observation, Observation, dict[str, str]]:
    """The target's round-1 update in the clear and as SecAgg+ masks it, and where each came from."""
    if ctx.views is None:
        raise FedembedError("this attack needs the run's update views (the composition root provides them)")
    seen = ctx.seen.get((1, client))
    observed_masked = seen is not None and seen.ring_bits is not None
    plain = seen if seen is not None and not observed_masked else ctx.views.replay(client)
    masked = seen if observed_masked else ctx.views.mask(plain, client)
    return plain, masked, {"plain": "observed" if seen is not None and not observed_masked else "replayed",
                           "masked": "observed" if observed_masked else "fedembed.secagg"}


def uniform_ring(plain: Observation, rng: np.random.Generator, ring_bits: int = 32) -> Observation:
    """The idealised masked view: a pairwise mask expanded by a PRG is uniform over the ring, so
    quantized update + mask is uniform whatever the update."""
    bound = 1 << ring_bits

    def uniform(a: np.ndarray) -> np.ndarray:
        return rng.integers(0, bound, size=a.shape, dtype=np.uint64)
    return Observation({k: uniform(t) for k, t in plain.tables.items()},
                       {k: uniform(w) for k, w in plain.weights.items()}, ring_bits)
