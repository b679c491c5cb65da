"""One client's round: load the shard, train locally from the global state, build the update.

Which stages the update then goes through is not decided here: the caller (the ClientApp,
client/app.py) passes the pipeline the composition root builds (`fedembed.compose.client_stages`).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from flwr.app import RecordDict

from fedembed import aggregate, config as config_mod, models, nodelog
from fedembed.config import Config
from fedembed.data import device
from fedembed.data.shards import load_units
from fedembed.federation import behaviour, pool, wire
from fedembed.federation.wire import TrainInstruction
from fedembed.privacy import record_params, record_state
from fedembed.privacy.record_dp import PrivateTraining, Samples
from fedembed.updates import ClientContext, ClientUpdate, Stage, delta, run_pipeline

Pipeline = Callable[[Config, ClientContext], list[Stage]]   # the stages after the delta, for this client


def scenario(ins: TrainInstruction) -> Config:
    """The round's scenario as sent. The server validated it; a client only parses it (cached)."""
    return config_mod.parse_json(ins.config_text) if ins.config_text else config_mod.parse(ins.config)


def training_seed(cfg: Config, rnd: int, partition_id: int) -> int:
    """The client's public training seed. Under FedSGD it is the round's alone: a user's draws are
    keyed by its own tokens (fedembed/train/sample_draws.py), so its update is the same alone or
    in a vectorised cohort; local SGD draws per client."""
    parts = [cfg.seed, rnd] if cfg.train.mode == "fedsgd" else [cfg.seed, rnd, partition_id]
    return int(np.random.SeedSequence(parts).generate_state(1)[0])


def train_round(global_tables: dict[str, np.ndarray], counts: np.ndarray, ins: TrainInstruction,
                partition_id: int, data_path: str | None = None,
                node_state: RecordDict | None = None, *, pipeline: Pipeline) -> ClientUpdate:
    """`node_state` is the node's persistent state (Flower's `context.state`): record-level DP
    keeps its accountant there between rounds (without it, each round's ε starts from the
    server's copy in `ins`, or from zero), and the family its private arrays (e.g. a user's row,
    which never leaves the node). `pipeline`: the update's stages after the delta."""
    t0 = time.perf_counter()
    cfg = scenario(ins)
    wait = behaviour.start(cfg, ins.round, partition_id)  # a simulated dropout raises behaviour.Dropped
    torch.set_num_threads(max(1, int(cfg.simulation.num_cpus_per_client)))
    # A device's own shard or raw corpus (tokenized here, fedembed/data/device.py), else the server's shards.
    shard_dir, shard_index = device.local_data(data_path, ins.shard_dir, cfg, counts, partition_id,
                                             ins.vocab_fingerprint)
    family = models.make(cfg)
    data = family.load_data(shard_dir, shard_index)
    seed = training_seed(cfg, ins.round, partition_id)
    private = None
    if cfg.privacy.record.enabled:
        saved = record_state.latest(wire.parse_record_dp(node_state) if node_state is not None else None,
                                    ins.record_dp)
        private = _private_training(cfg, shard_dir, shard_index, data.bounds, saved)  # record_dp families: text
    state = wire.family_state(node_state) if node_state is not None else {}
    result = family.train(global_tables, data, counts, ins.lr_start, ins.lr_end, seed, private, state)
    if node_state is not None:
        wire.put_family_state(node_state, state)   # the node's own: never in a message
    rule = aggregate.make(cfg)
    if private is None:
        update = delta(result.tables, global_tables, rule.client_weights(result.row_counts, result.examples))
        update.metrics = {"loss": result.loss, "examples": float(result.examples), "words": float(result.words)}
    else:
        # Nothing that depends on the data leaves the client unnoised: the row weights are
        # data-independent (every row got noise), FedAvg counts the client once, and the
        # training loss and example counts stay home (the ε covers only the tables).
        update = delta(result.tables, global_tables, rule.client_weights(result.row_counts, 1))
        update.metrics = record_state.metrics(private.accountant, private.params)
        if node_state is not None:
            wire.put_record_dp(node_state, record_state.capture(private.accountant, private.params))
    update.metrics["train_seconds"] = time.perf_counter() - t0
    nodelog.log_round_memory(ins.round, partition_id, update.metrics["train_seconds"], data_path)  # deployed nodes only
    behaviour.finish(wait)  # a simulated straggler replies late
    ctx = ClientContext(partition_id, ins.round, global_tables, counts, str(shard_dir))
    return run_pipeline(update, pipeline(cfg, ctx))


def reply(update: ClientUpdate, ins: TrainInstruction, node_state: RecordDict) -> RecordDict:
    """The reply content for one client's update (its accountant state rides along)."""
    return wire.reply_content(update.tables, update.weights, update.metrics, wire.parse_record_dp(node_state),
                              sparse=wire.sparse_upload(ins.config))


def train_pooled(global_tables: dict[str, np.ndarray], counts: np.ndarray, ins: TrainInstruction,
                 content: RecordDict, node_state: RecordDict, *, pipeline: Pipeline) -> RecordDict:
    """A pool node's round (fedembed/federation/pool.py): each named partition in turn, from
    the same global tables, each with its own record-level state; a simulated dropout fails
    that client only. Under FedSGD, all of them in one vectorised step (`train_cohort`)."""
    if scenario(ins).train.mode == "fedsgd":
        return train_cohort(global_tables, counts, ins, content)
    replies: dict[int, RecordDict] = {}
    errors: dict[int, str] = {}
    for p in pool.partitions(content) or []:
        own = pool.state_of(node_state, p)
        mine = dataclasses.replace(ins, record_dp=wire.parse_record_dp(pool.state_of(content, p)))
        try:
            update = train_round(global_tables, counts, mine, p, None, own, pipeline=pipeline)
        except behaviour.Dropped as exc:
            errors[p] = str(exc)
            continue
        pool.keep_state(node_state, p, own)
        replies[p] = reply(update, ins, own)
    return pool.reply_content(replies, errors)


def _private_training(cfg, shard_dir: Path, partition_id: int, bounds: np.ndarray,
                      saved: record_state.State | None) -> PrivateTraining:
    """DP-SGD's samples, parameters and accountant (continuing from `saved`) for this client."""
    units = load_units(shard_dir, partition_id, len(bounds)) if cfg.privacy.record.unit == "document" else None
    samples = Samples(bounds, units)
    params = record_params.resolve(cfg, len(samples), record_state.saved_noise_multiplier(saved),
                                   record_state.history(saved))
    return PrivateTraining(params, samples, record_state.restore(params.accountant, saved))


def train_cohort(global_tables: dict[str, np.ndarray], counts: np.ndarray, ins: TrainInstruction,
                 content: RecordDict) -> RecordDict:
    """A pool node's FedSGD users in one vectorised step (fedembed/train/cohort.py): each user's
    update clipped to C under user-level DP (privacy.clip), and only their sum — with how many
    users touched each row, the presence weights' sum — leaves the node (fedembed/federation/pool.py
    `cohort_reply`). The server checks the sum against the users it stands for and accounts each
    of them as a client: the same aggregate as training them one by one, up to float addition."""
    t0 = time.perf_counter()
    cfg = scenario(ins)
    torch.set_num_threads(max(1, int(cfg.simulation.num_cpus_per_client)))
    family = models.make(cfg)
    users, errors, data = [], {}, []
    for p in pool.partitions(content) or []:
        try:
            behaviour.start(cfg, ins.round, p)      # a simulated dropout leaves this user out
        except behaviour.Dropped as exc:
            errors[p] = str(exc)
            continue
        users.append(p)
        data.append(family.load_data(Path(ins.shard_dir), p))
    clip = cfg.privacy.clip if cfg.privacy.user_level else float("inf")
    got = family.train_cohort(global_tables, data, counts, ins.lr_start, training_seed(cfg, ins.round, -1), clip)
    private = cfg.privacy.user_level
    weights = {k: (np.zeros_like(w) if private and cfg.privacy.denominator == "public" else w).astype(np.float32)
               for k, w in got.presence.items()}
    metrics = {"examples": float(got.stats.examples), "words": float(got.stats.words),
               "loss": got.stats.loss, "train_seconds": time.perf_counter() - t0}
    if private and cfg.privacy.adaptive_clip:      # the users' clip bits, summed (Σ b − ½)
        from fedembed.privacy.user_dp import CLIP_BIT
        metrics[CLIP_BIT] = float(np.sum(np.where(got.norms <= clip, 0.5, -0.5)))
    if private:   # under DP the loss and counts of the users' data stay on the node, as for one client
        metrics = {k: v for k, v in metrics.items() if k not in ("examples", "words", "loss")}
    return pool.cohort_reply(got.sums, weights, metrics, users, errors)
