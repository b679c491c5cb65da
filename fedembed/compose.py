"""The composition root: the one module that knows every domain and wires a run from a Config.

Everything else receives what it needs from here instead of reaching for it: `config.py`
parses scenarios without knowing the packages that own their keys; the client's round
(fedembed/federation/client.py) runs whatever stage list it is given; the server's round loop
(fedembed/federation/server.py) calls a privacy session, a round transport, a collector and
a server step without knowing which ones. This module decides, in one place:

- `validate`: a parsed Config, checked by every package's registered check (`CHECKS`);
- `client_stages`: the update pipeline, in DESIGN.md's order — adversary (simulation only) →
  row weights → robust-rule preparation → clip → (SecAgg+:) flatten → range clip → noise
  share → tally → quantize → mask;
- `build_server`: the server's parts for a run (privacy session, transport, collector, step,
  observers);
- `describe`: the pipeline and the server's path as lines, for `fedembed simulate --dry-run`
  and the run's log.

Heavy imports (Flower, torch) happen inside the builders, so that validating a scenario stays
fast enough to run before anything else.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from fedembed import aggregate, config as config_mod, models
from fedembed.aggregate import robust
from fedembed.attacks import adversaries
from fedembed.attacks.privacy import params as attack_params
from fedembed.config import Config
from fedembed.data import partition
from fedembed.data.partition import params as partition_params
from fedembed.discovery import params as discovery_params
from fedembed.errors import ConfigError
from fedembed.federation import behaviour
from fedembed.models import RunView, init as model_init
from fedembed import server_opt
from fedembed.privacy import params as privacy_params, record_params, release_rows, tree_accounting, user_dp
from fedembed.secagg import params as secagg_params
from fedembed.federation.pool_params import check as check_pool
from fedembed.updates import ClientContext, Stage, weight_rows

if TYPE_CHECKING:
    from fedembed.data.prepare import Prepared
    from fedembed.data.sources import DataSource
    from fedembed.federation.server import ServerParts
    from fedembed.secagg.client import MaskContext
    from fedembed import checkpoint

REGISTRIES = (("partition.name", lambda c: c.partition.name, partition.PARTITIONERS),
              ("model.family", lambda c: c.model.family, models.FAMILIES),
              ("federation.aggregate", lambda c: c.federation.aggregate, aggregate.AGGREGATORS))

def _wired(cfg: Config) -> None:
    """What the composition root does not (yet) put together, refused with the reason."""
    from fedembed.federation.pool_params import check_cohorts

    family = models.FAMILIES.get(cfg.model.family)
    check_cohorts(cfg, family.cohorts)
    if cfg.vocab.mode == "discovered" and family.data_kind != models.TEXT:
        raise ConfigError(f"vocab.mode = \"discovered\" finds words in the clients' text: model.family = "
                          f"{cfg.model.family!r} trains on {family.data_kind}, whose rows are not a vocabulary")
    p = cfg.privacy
    if p.user_level and p.mechanism == "ftrl_tree":
        if cfg.secagg.enabled:
            raise ConfigError("privacy.mechanism = \"ftrl_tree\" runs with central noise from a trusted server: set "
                              "secagg.enabled = false (under SecAgg+ the tree is sound only with every client in every "
                              "round, where it gains nothing over per-round noise: docs/PRIVACY_FTRL.md)")
        if p.adaptive_clip:
            raise ConfigError("privacy.adaptive_clip is not wired for privacy.mechanism = \"ftrl_tree\" yet (C may "
                              "change only at a tree restart); use a fixed privacy.clip")


# Every package's check of its own keys, in the order they run (cheap: no training, no I/O).
def check_data(cfg: Config) -> None:
    """The family's data source checks its `[data]` keys (fedembed/data/sources)."""
    if cfg.model.family in models.FAMILIES:
        data_source(cfg).check(cfg)


CHECKS: tuple[Callable[[Config], None], ...] = (
    privacy_params.check, record_params.check, partition_params.check, behaviour.check,
    attack_params.check, robust.check, adversaries.check, secagg_params.check, check_pool,
    models.check, check_data, model_init.check, server_opt.check, tree_accounting.check, _wired,
    discovery_params.check, release_rows.check)


def validate(cfg: Config) -> Config:
    """`config.check`, the registries' names, then every package's check; the Config, or a ConfigError."""
    config_mod.check(cfg)
    for key, value, registry in REGISTRIES:
        if value(cfg) not in registry:
            raise ConfigError(f"{key}: {value(cfg)!r} is not one of {sorted(registry)}")
    for check in CHECKS:
        check(cfg)
    return cfg


def from_dict(values: dict[str, Any]) -> Config:
    return validate(config_mod.parse(values))


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
         origins: dict[str, str] | None = None) -> Config:
    """A scenario file (or the defaults) with dotted overrides, parsed and validated by every
    package; an error blames the flag, override or file that set the wrong value (config.load)."""
    return config_mod.load(path, overrides, origins, validate=validate)


# ---- the client's update pipeline

def client_stages(cfg: Config, ctx: ClientContext | None, secure: "MaskContext | None" = None) -> list[Stage]:
    """The stages after the delta, in order. `ctx` None: an honest client outside a round (benchmarks).
    `secure`: this client's SecAgg+ mask context, whose stages (flatten, range clip, noise share,
    quantize, mask) end the pipeline."""
    stages: list[Stage] = [*adversaries.stages(cfg, ctx), weight_rows, *aggregate.make(cfg).client_stages(),
                           *release_stages(cfg), *user_dp.client_stages(cfg)]
    if secure is not None:
        stages += secure_stages({k: v.shape for k, v in ctx.global_tables.items()}, secure)
    return stages


def release_stages(cfg: Config) -> list[Stage]:
    """`privacy.release_rows`: the rows past K zeroed before the clip (fedembed/privacy/release_rows.py)."""
    if not (cfg.privacy.user_level and cfg.privacy.release_rows):
        return []
    return [release_rows.ReleaseRows(cfg.privacy.release_rows, models.make(cfg).row_tables)]


def secure_stages(shapes: dict[str, tuple[int, ...]], secure: "MaskContext") -> list[Stage]:
    """SecAgg+'s stages for one client's round: flatten → range clip → (noise share) → (tally) → quantize → mask."""
    from fedembed.privacy.distributed import NoiseShare
    from fedembed.secagg.stages import Flatten, Mask, Quantize, RangeClip, Tally

    q, tally = secure.quantizer(shapes), secure.tally
    stages: list[Stage] = [Flatten(q.layout, user_dp.CLIP_BIT, secure.pid, tally.size),
                           RangeClip(q, report=not secure.dither)]
    if secure.noise_std > 0 or secure.bit_noise_std > 0:
        stages.append(NoiseShare(secure.noise_std, secure.bit_noise_std, q.layout.weight_end, secure.rng))
    if tally.size:
        stages.append(Tally(tally, q.layout, secure.rng))
    return stages + [Quantize(q, secure.dither_key, secure.rng), Mask(secure)]


def secure_pipeline(cfg: Config, ctx: ClientContext, secure: "MaskContext") -> list[Stage]:
    """`client_stages` with the mask context (the signature the SecAgg+ handlers take)."""
    return client_stages(cfg, ctx, secure)


# ---- the server's parts

def build_server(cfg: Config, run_dir: Path, prep: "Prepared", state: "checkpoint.State",
                 observers: list | None = None) -> "ServerParts":
    """The run's privacy session, transport, collector, server step and observers."""
    from fedembed.federation.plain_round import PlainTransport
    from fedembed.federation.record_copies import ServerCopies
    from fedembed.federation.secure_round import SecureTransport
    from fedembed.federation.server import ServerParts
    from fedembed.observe import Observers
    from fedembed.privacy.session import PrivacySession

    rule = aggregate.make(cfg)
    if cfg.vocab.mode == "discovered":      # the discovery's rounds go into the ledger first: one budget
        from fedembed.discovery.accounting import prime
        prime(cfg, state.extra, run_dir)
    shapes = {k: v.shape for k, v in state.tables.items()}
    privacy = PrivacySession(cfg, state.extra, public_counts=prep.vocab.counts, shapes=shapes,  # z before training
                             row_tables=models.make(cfg).row_tables, release_rows=cfg.privacy.release_rows)
    transport = SecureTransport(cfg) if cfg.secagg.enabled else PlainTransport(cfg)
    family = models.make(cfg)
    round_quality = (lambda tables: family.round_figures(RunView(cfg, run_dir, prep.vocab, tables, prep.shard_dir,
                                                                 prep.manifest.active))) \
        if cfg.eval.every_round else None
    optimizer = server_opt.make(cfg)      # how the released aggregate moves the tables (post-processing)
    if state.arrays:
        optimizer.load_state_arrays(state.arrays)
    return ServerParts(privacy=privacy, copies=ServerCopies(state.extra), transport=transport,
                       collector=rule.collector, optimizer=optimizer, sample=sampler(cfg, privacy),
                       observers=Observers(observers), round_quality=round_quality)


def sampler(cfg: Config, privacy) -> Callable[[list[int], int], list[int]]:
    """Who takes part in a round: DP-FTRL's public schedule (by released step), Poisson sampling
    from secret randomness under DP-FedAvg (the amplification its accounting credits), or a
    fixed-size draw reproducible from the seed."""
    from fedembed.federation.server import sample_clients

    if cfg.privacy.user_level and cfg.privacy.mechanism == "ftrl_tree":
        tree = privacy.user

        def scheduled(active: list[int], rnd: int) -> list[int]:
            keep = set(active)
            return [p for p in tree.clients(tree.tree.steps + 1) if p in keep]
        return scheduled
    return lambda active, rnd: sample_clients(cfg, active, rnd)


def discover_vocabulary(grid, cfg: Config, run_dir: Path) -> None:
    """`vocab.mode = "discovered"`: the discovery rounds (fedembed/discovery) before anything is prepared;
    they leave the run's vocab.tsv, which the text source then uses as its vocabulary
    (fedembed/data/text_shards.py). Nothing to do in public mode."""
    if cfg.vocab.mode == "discovered":
        from fedembed.discovery.rounds import ensure
        ensure(grid, cfg, run_dir)


def data_source(cfg: Config) -> "DataSource":
    """The source of the family's kind of data: its row index and per-client shards."""
    from fedembed.data import sources

    return sources.make(models.FAMILIES.get(cfg.model.family).data_kind)


def init_tables(cfg: Config, run_dir: Path | None = None) -> Callable[[list[str]], tuple[dict, dict]]:
    """The global tables before round 1 for a vocabulary, and what they were made from:
    the family's random start, or a public warm start (model.init: fedembed/models/init.py,
    cached in the run directory)."""
    from fedembed.models.init import initial_tables

    family = models.make(cfg)
    return lambda words: initial_tables(cfg, list(words), family, cfg.seed, cache_dir=run_dir)


# ---- what a run goes through, in words

def describe(cfg: Config) -> list[str]:
    """The update pipeline and the server's path for this scenario, one line a stage."""
    from fedembed.privacy.params import resolve

    lines = []
    if cfg.vocab.mode == "discovered":
        from fedembed.discovery.params import resolve as discovery
        d = discovery(cfg)
        lines.append(f"vocabulary: discovered privately before training: {len(d.chunks)} trie levels and "
                     f"{d.refine_rounds} refinement round(s), ε = {d.epsilon:g} at δ = {d.delta:.3g} "
                     f"(charged to the user-level ledger with training)")
    if cfg.train.mode == "fedsgd":
        lines += [f"client: one full-batch gradient step of {cfg.model.family} at lr {cfg.train.lr:g} (FedSGD; "
                  f"a pool node trains its sampled users as one vectorised cohort, each clipped on its own)"]
    else:
        lines += ["client: local training (" + cfg.model.family
                  + (f", record-level DP-SGD per {cfg.privacy.record.unit}" if cfg.privacy.record.enabled else "")
                  + f", {cfg.train.local_epochs} local epoch(s))"]
    adv = adversaries.describe(cfg)
    stages = [*([adv] if adv else []), weight_rows.describe(),
              *(s.describe() for s in aggregate.make(cfg).client_stages()),
              *(s.describe() for s in release_stages(cfg)),
              *(s.describe() for s in user_dp.client_stages(cfg))]
    user = resolve(cfg) if cfg.privacy.user_level and cfg.privacy.mechanism != "ftrl_tree" else None
    if cfg.vocab.mode == "discovered" and user is not None:       # z from what the discovery leaves of the ε
        import dataclasses

        from fedembed.discovery.accounting import planned_training_noise
        z = planned_training_noise(cfg)
        user = dataclasses.replace(user, noise_multiplier=z) if z is not None else user
    if cfg.secagg.enabled:
        n = cfg.federation.clients_per_round or cfg.partition.num_clients
        stages += secagg_params.describe_client(cfg, n, user)
    lines += [f"  → {s}" for s in stages]
    lines.append("transport: " + ("SecAgg+ sum (server sees only the sum of the survivors' masked updates)"
                                  if cfg.secagg.enabled else "plain (server sees every client's update)"))
    rule = aggregate.make(cfg)
    server = [f"aggregate: {cfg.federation.aggregate}"
              + (f" ({cfg.federation.row_weight} weights)" if cfg.federation.aggregate == "rowwise" else "")]
    if cfg.privacy.user_level and cfg.privacy.mechanism == "ftrl_tree":
        from fedembed.privacy import ftrl

        params, _, factor = ftrl.resolve(cfg)
        server.insert(0, f"noise: DP-FTRL tree aggregation (z = {params.noise_multiplier:.4g} per node, sensitivity "
                         f"factor {factor:.3g}, restart every {cfg.privacy.restart_every or 'never'}), added by the "
                         f"server; public row denominators; clients by a fixed public schedule")
    elif cfg.privacy.user_level:
        where = "the clients' noise shares, already in the sum" if cfg.secagg.enabled else "added by the server"
        server.insert(0, f"noise: Gaussian, std z·C with z = {user.noise_multiplier:.4g} ({where}); "
                         f"{cfg.privacy.denominator} row denominators")
    server.append(f"step ({cfg.federation.server_optimizer}): tables += {cfg.federation.server_lr:g} × "
                  + ("aggregate" if cfg.federation.server_optimizer == "sgd" else "the optimiser's step on the aggregate"))
    lines += [f"  → {s}" for s in server]
    if not rule.composes_with_secagg:
        lines.append(f"  (the rule needs every update: {rule.secagg_reason})")
    return lines


# ---- what the privacy attacks may see of a client's update

def update_views(cfg: Config, prep: "Prepared"):
    """Replay a client's round-1 update and mask it as SecAgg+ does, with the run's own code."""
    from fedembed.attacks.privacy import UpdateViews

    return UpdateViews(replay=lambda client: replay_update(cfg, prep, client),
                       mask=lambda plain, client: mask_like_secagg(plain, cfg, client))


def replay_update(cfg: Config, prep: "Prepared", client: int):
    """The client's round-1 reply on the plain path: from the initial tables (a function of the
    public seed), with the client's deterministic training seed and this scenario's pipeline."""
    import copy

    from fedembed.federation.client import train_round
    from fedembed.federation.server import learning_rates
    from fedembed.federation.wire import TrainInstruction
    from fedembed.observe import Observation

    conf = copy.deepcopy(cfg.to_dict())
    conf["secagg"]["enabled"] = False
    tables, _ = init_tables(cfg, prep.shard_dir.parent)(prep.vocab.words)
    lr_start, lr_end = learning_rates(cfg, 1)
    ins = TrainInstruction(1, lr_start, lr_end, cfg.seed, conf, str(prep.shard_dir.resolve()))
    update = train_round(tables, prep.vocab.counts, ins, client, pipeline=client_stages)
    return Observation(update.tables, update.weights)


def mask_like_secagg(plain, cfg: Config, client: int):
    """What fedembed.secagg's client sends for this plain update: its SecAgg+ stages with the
    scenario's [secagg] numbers, its self mask and one pairwise mask per neighbour (fresh keys)."""
    import os

    import numpy as np
    from flwr.app import ConfigRecord

    from fedembed.observe import Observation
    from fedembed.secagg import keys
    from fedembed.secagg.client import MaskContext
    from fedembed.updates import ClientUpdate, run_pipeline

    n = cfg.federation.clients_per_round or cfg.partition.num_clients
    rp = secagg_params.for_round(cfg, n)
    peers = [p for p in range(n + 1) if p != client][: max(rp.degree, 1)]
    record = ConfigRecord({"bits": rp.bits, "table_range": rp.table_range, "weight_range": rp.weight_range,
                           "ring": rp.ring, "peers": peers,
                           "peer_keys": [keys.public_of(keys.new_private()) for _ in peers],
                           "noise_std": 0.0, "dither": False})
    secrets = ConfigRecord({"nonce": os.urandom(16), "b": os.urandom(32), "s_sk": keys.new_private()})
    mctx = MaskContext(client, record, secrets)
    update = ClientUpdate({k: np.array(v) for k, v in plain.tables.items()},
                          {k: np.array(v) for k, v in plain.weights.items()})
    stages = secure_stages({k: v.shape for k, v in plain.tables.items()}, mctx)
    vector = run_pipeline(update, stages).vector
    tables, weights = stages[0].layout.split(vector)
    return Observation(tables, weights, rp.ring)
