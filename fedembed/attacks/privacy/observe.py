"""What the server sees from the target client in one round, reconstructed after the run.

Rather than a hook in the server's round loop, the target's round-1 update is replayed
offline: round 1 starts from the initial tables (a function of the public seed), the
client's training seed is SeedSequence([seed, round, client]) and its pipeline's stages
are deterministic, so without secure aggregation this is exactly the reply the server
got in round 1 when the client was sampled (record-level DP draws fresh secret noise: the
same distribution). With secure aggregation the server gets that update clipped, quantized
and masked instead; `masked` builds that view with fedembed.secagg's own client masking
(fresh keys for the client and its neighbours), or, where that is unavailable, the uniform
ring vector that ideal masking yields.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np

from fedembed import models
from fedembed.attacks.privacy import AttackContext

log = logging.getLogger(__name__)


@dataclass
class Observation:
    """One client's reply as the server holds it: floats, or integers in Z_{2^ring_bits} (masked)."""
    tables: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    ring_bits: int | None = None


def plaintext(ctx: AttackContext, client: int) -> Observation:
    """The target's round-1 reply on the plain path (secure aggregation off)."""
    from fedembed.federation.client import train_round
    from fedembed.federation.server import learning_rates
    from fedembed.federation.wire import TrainInstruction

    cfg = ctx.cfg
    conf = copy.deepcopy(cfg.to_dict())
    if "secagg" in conf:
        conf["secagg"]["enabled"] = False
    tables = models.make(cfg).init_tables(len(ctx.prep.vocab), cfg.seed)
    lr_start, lr_end = learning_rates(cfg, 1)
    ins = TrainInstruction(1, lr_start, lr_end, cfg.seed, conf, str(ctx.prep.shard_dir.resolve()))
    update = train_round(tables, ctx.prep.vocab.counts, ins, client)
    return Observation(update.tables, update.weights)


def uniform_ring(plain: Observation, rng: np.random.Generator, ring_bits: int = 32) -> Observation:
    """The idealised masked view: a pairwise mask expanded by a PRG is uniform over the ring, so
    quantized update + mask is uniform whatever the update."""
    bound = 1 << ring_bits
    def uniform(a: np.ndarray) -> np.ndarray:
        return rng.integers(0, bound, size=a.shape, dtype=np.uint64)
    return Observation({k: uniform(t) for k, t in plain.tables.items()},
                       {k: uniform(w) for k, w in plain.weights.items()}, ring_bits)


def secagg_masked(plain: Observation, cfg, client: int) -> Observation:
    """What fedembed.secagg's client sends for this update: clipped, quantized with the scenario's
    [secagg] numbers, plus its self mask and one pairwise mask per neighbour (fresh keys)."""
    import os

    from flwr.app import ConfigRecord

    from fedembed.secagg import client as sa_client, keys, params
    from fedembed.secagg.quantize import Layout, Quantizer

    n = cfg.federation.clients_per_round or cfg.partition.num_clients
    rp = params.for_round(cfg, n)
    shapes = {k: t.shape for k, t in plain.tables.items()}
    q = Quantizer(Layout(shapes), rp.bits, rp.table_range, rp.weight_range, rp.ring)
    peers = [p for p in range(n + 1) if p != client][: max(rp.degree, 1)]
    c = ConfigRecord({"bits": rp.bits, "table_range": rp.table_range, "weight_range": rp.weight_range,
                      "ring": rp.ring, "peers": peers,
                      "peer_keys": [keys.public_of(keys.new_private()) for _ in peers],
                      "noise_std": 0.0, "dither": False})
    st = ConfigRecord({"nonce": os.urandom(16), "b": os.urandom(32), "s_sk": keys.new_private()})
    y, _ = sa_client.mask(q.layout.flatten(plain.tables, plain.weights), c, st, q, client)
    tables, weights = q.layout.split(y)
    return Observation(tables, weights, rp.ring)


def masked(plain: Observation, cfg, client: int, rng: np.random.Generator) -> tuple[Observation, str]:
    """The masked vector the server receives under secure aggregation, and where the mask came from:
    fedembed.secagg's own client masking, or the uniform stand-in if that is unavailable."""
    try:
        return secagg_masked(plain, cfg, client), "fedembed.secagg"
    except (ImportError, AttributeError, KeyError, TypeError) as exc:
        log.warning("vocabulary inference: fedembed.secagg masking unavailable (%s); using a uniform ring vector",
                    exc)
        return uniform_ring(plain, rng), "uniform-ring-stand-in"
