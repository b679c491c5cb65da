"""The server's round loop: sample → train content → transport's sum → release → apply.

Called through the app layer (fedembed/run.py, from server/app.py under both `fedembed
simulate` and `flwr run .`) with Flower's Grid and the parts the composition root built
(fedembed/compose.py): the privacy session, the round transport (plain or SecAgg+), the
rule's collector, the server optimiser and the run's observers. It knows none of their
kinds: every round is the same path, and the global tables are updated in one place
(`apply`). What happens after the last round (export, evaluation, attacks, plots, report)
is the app layer's, not this loop's.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from flwr.app import Message, MessageType
from tqdm import tqdm

from fedembed import checkpoint, metrics
from fedembed.aggregate.accumulate import Collector
from fedembed.config import DEVICES, Config
from fedembed.data.prepare import Prepared
from fedembed.errors import CheckpointError, FedembedError
from fedembed.federation import pool, stream, wire
from fedembed.federation.accept import ReplySink
from fedembed.federation.record_copies import ServerCopies
from fedembed.federation.transport import RoundPlan, Transport
from fedembed.observe import Observers
from fedembed.privacy import write_ahead
from fedembed.privacy.params import sample_rate
from fedembed.privacy.sampling import poisson_sample, secret_rng
from fedembed.privacy.session import PrivacySession
from fedembed.server_opt import ServerOptimizer

log = logging.getLogger(__name__)


def learning_rates(cfg: Config, rnd: int) -> tuple[float, float]:
    """Linear decay over the whole federation: round `rnd` (1-based) covers its slice."""
    lr, lo, r = cfg.train.lr, cfg.train.min_lr, cfg.federation.rounds
    return lr - (lr - lo) * (rnd - 1) / r, lr - (lr - lo) * rnd / r


def discover_partitions(grid, expected: int, wait_s: float = 120.0, window: int = 0,
                        what: str = "partition.num_clients") -> dict[int, int]:
    """Ask every node which partition it holds: partition id → node id (`window`:
    fedembed.federation.stream). A pool node (fedembed/federation/pool.py) reports its index
    among `expected` = simulation.nodes instead."""
    deadline = time.monotonic() + wait_s
    nodes = list(grid.get_node_ids())
    while len(nodes) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        nodes = list(grid.get_node_ids())
    if len(nodes) < expected:
        raise FedembedError(f"only {len(nodes)} of {expected} clients connected within {wait_s:.0f}s")
    msgs = [Message(content=wire.node_content(-1, -1), dst_node_id=n, message_type=MessageType.QUERY) for n in nodes]
    mapping: dict[int, int] = {}
    for reply in stream.send_and_receive(grid, msgs, window, wait_s):
        if reply.has_error():
            raise FedembedError(f"node {reply.metadata.src_node_id} failed to report its partition: "
                                f"{reply.error.reason}")
        pid, num = wire.parse_node(reply.content)
        if num != expected:
            raise FedembedError(f"node {reply.metadata.src_node_id} reports {num} partitions, "
                                f"the scenario has {what}={expected}")
        if pid in mapping:
            raise FedembedError(f"two nodes claim partition {pid}")
        mapping[pid] = reply.metadata.src_node_id
    if len(mapping) < expected:  # replies lost or late: never go on with fewer clients, silently
        raise FedembedError(f"only {len(mapping)} of {len(nodes)} connected nodes reported their partition "
                            f"within {wait_s:.0f}s ({what}={expected})")
    return mapping


INIT_KEY = "init"   # state.extra: what the tables started from (model.init), for the report


def initial_state(run_dir: Path, prep: Prepared, resume: bool,
                  init_tables: Callable[[list[str]], tuple[dict[str, np.ndarray], dict[str, Any]]]
                  ) -> checkpoint.State:
    """The checkpoint to continue from (`resume`), or round 0 with the initial tables (random, or
    a public warm start) and their description."""
    fingerprint = prep.vocab.fingerprint()
    if resume and checkpoint.exists(run_dir):
        state = checkpoint.load(run_dir)
        if state.vocab_fingerprint != fingerprint:
            raise CheckpointError(f"checkpoint in {run_dir} was trained on another vocabulary")
        metrics.truncate(run_dir, state.round)
        log.info("resuming %s after round %d", run_dir, state.round)
    else:
        (run_dir / metrics.METRICS).unlink(missing_ok=True)
        tables, described = init_tables(prep.vocab.words)
        state = checkpoint.State(0, tables, fingerprint, {INIT_KEY: described})
    state.extra = write_ahead.recover(run_dir, state.round, state.extra)   # a release a crash left uncharged
    return state


LOOK_AHEAD = 2   # rounds whose clients are drawn early: r + 1 shares, r + 2 advertises its keys, during round r


def sample_clients(cfg: Config, active: list[int], rnd: int) -> list[int]:
    """Under user-level DP, Poisson sampling from secret randomness (the amplification the
    accountant counts on; the number of clients varies and may be 0); otherwise a fixed-size
    draw reproducible from the seed."""
    if cfg.privacy.user_level:
        return poisson_sample(active, sample_rate(cfg), secret_rng())
    k = cfg.federation.clients_per_round or len(active)
    rng = np.random.default_rng([cfg.seed, rnd])
    return sorted(rng.choice(active, size=min(k, len(active)), replace=False).tolist())


@dataclass
class ServerParts:
    """What the composition root builds for a run; the loop calls it without knowing its kind."""
    privacy: PrivacySession
    copies: ServerCopies
    transport: Transport
    collector: Callable[[dict[str, tuple[int, ...]]], Collector]
    optimizer: ServerOptimizer         # the server's step on the tables (its state is checkpointed)
    sample: Callable[[list[int], int], list[int]]   # (active partitions, round) → the round's clients
    observers: Observers = field(default_factory=Observers)
    round_quality: Callable[[dict[str, np.ndarray]], dict[str, Any]] | None = None   # eval.every_round


@dataclass
class RunOutcome:
    """What the loop hands to the app layer: the final tables and what the report needs."""
    cfg: Config
    run_dir: Path
    prep: Prepared
    tables: dict[str, np.ndarray]
    privacy: dict[str, Any]            # the ledger's summary
    rounds_applied: int                # rounds whose sum was applied, this run and before a resume


def run_rounds(grid, cfg: Config, run_dir: Path, prep: Prepared, state: checkpoint.State, parts: ServerParts,
               progress: bool = True) -> RunOutcome:
    """Every remaining round of the run; checkpoints after each, stops before exceeding the budget."""
    privacy, copies = parts.privacy, parts.copies
    if cfg.simulation.nodes:  # a pool of nodes hosting the clients: partition p on node p % nodes
        nodes = pool.hosts(cfg.partition.num_clients,
                           discover_partitions(grid, cfg.simulation.nodes, what="simulation.nodes"))
    else:
        nodes = discover_partitions(grid, cfg.partition.num_clients)
    active = [p for p in prep.manifest.active if p in nodes]
    vocab_record = wire.arrays({"counts": prep.vocab.counts})
    shapes = {k: v.shape for k, v in state.tables.items()}
    bar = tqdm(total=cfg.federation.rounds, initial=state.round, desc="rounds", unit="round",
               disable=not progress, dynamic_ncols=True)
    drawn: dict[int, list[int]] = {}   # round → its clients, drawn ahead (secagg.share_ahead)
    look = LOOK_AHEAD if cfg.secagg.enabled and cfg.secagg.share_ahead else 0
    applied = int(state.extra.get(APPLIED_KEY, state.round))

    def write_ahead_ledger(rnd: int) -> None:   # before any release of round `rnd` is used
        if not privacy.ledger.units and not copies.states:
            return                              # nothing private to lose
        extra: dict[str, Any] = {}
        privacy.save(extra)
        copies.save(extra)
        write_ahead.write(run_dir, rnd, extra)
    privacy.on_charge = write_ahead_ledger
    for rnd in range(state.round + 1, cfg.federation.rounds + 1):
        stop = privacy.budget_stop(rnd)
        if stop:
            log.warning(stop)
            metrics.append(run_dir, {"round": rnd, "event": "privacy_budget_stop", "message": stop})
            _save(run_dir, state, parts, applied)
            break
        clients = drawn.pop(rnd) if rnd in drawn else parts.sample(active, rnd)
        later = range(rnd + 1, min(rnd + look, cfg.federation.rounds) + 1)
        for r in later:
            if r not in drawn:
                drawn[r] = parts.sample(active, r)
        t0 = time.perf_counter()
        lr_start, lr_end = learning_rates(cfg, rnd)
        shards = "" if cfg.data.format == DEVICES else str(prep.shard_dir.resolve())  # "": the nodes' own data
        ins = wire.TrainInstruction(rnd, lr_start, lr_end, cfg.seed, privacy.round_config(cfg, rnd), shards,
                                    vocab_fingerprint=prep.vocab.fingerprint())
        plan = RoundPlan(rnd, clients, nodes, wire.train_content(wire.arrays(state.tables), vocab_record, ins),
                         shapes, lr_start, [drawn[r] for r in later])
        sink = ReplySink(cfg, rnd, privacy, copies, parts.collector(shapes), shapes, parts.observers)
        got = parts.transport.collect(grid, plan, sink)
        record: dict[str, Any] = {"round": rnd, "clients": len(clients), "lr": lr_start, **got.record,
                                  "train_loss": sink.train_loss, "examples": int(sink.examples)}
        if got.aborted is None:
            parts.optimizer.step(state.tables, privacy.release(got.sums, got.weights, got.noise_in_sums))
            applied += 1
        else:
            record.update(event="secagg_abort", message=got.aborted)
        record["seconds"] = time.perf_counter() - t0
        entry = privacy.end_round(rnd)
        if entry is not None:
            record["privacy"] = entry
        if parts.round_quality is not None:
            record["quality"] = parts.round_quality(state.tables)
        metrics.append(run_dir, record)
        state.round = rnd
        _save(run_dir, state, parts, applied)
        bar.update(1)
        bar.set_postfix(loss="n/a" if record["train_loss"] is None else f"{record['train_loss']:.4f}")
    bar.close()
    return RunOutcome(cfg, run_dir, prep, state.tables, privacy.summary(), applied)


APPLIED_KEY = "rounds_applied"


def _save(run_dir: Path, state: checkpoint.State, parts: ServerParts, applied: int) -> None:
    parts.privacy.save(state.extra)
    parts.copies.save(state.extra)
    state.extra[APPLIED_KEY] = applied
    state.arrays = parts.optimizer.state_arrays()
    checkpoint.save(run_dir, state)
