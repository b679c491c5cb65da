"""The server's side of a run: rounds of sample → broadcast → secure/plain sum → apply.

Called by the ServerApp (server/app.py) with Flower's Grid, both under `fedembed
simulate` and `flwr run .`. Everything it needs is the resolved config and a run directory.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Message, MessageType, RecordDict
from tqdm import tqdm

from fedembed import checkpoint, metrics, models
from fedembed.aggregate import collector
from fedembed.config import DEVICES, Config
from fedembed.data.prepare import Prepared, prepare
from fedembed.errors import CheckpointError, FedembedError, UpdateError
from fedembed.eval import per_round
from fedembed.federation import behaviour, pool, stream, wire
from fedembed.privacy.params import sample_rate
from fedembed.privacy.sampling import poisson_sample, secret_rng
from fedembed.privacy.session import PrivacySession
from fedembed.privacy.record_state import ServerCopies
from fedembed.report import finalize

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


def initial_state(cfg: Config, run_dir: Path, prep: Prepared, resume: bool) -> checkpoint.State:
    fingerprint = prep.vocab.fingerprint()
    if resume and checkpoint.exists(run_dir):
        state = checkpoint.load(run_dir)
        if state.vocab_fingerprint != fingerprint:
            raise CheckpointError(f"checkpoint in {run_dir} was trained on another vocabulary")
        metrics.truncate(run_dir, state.round)
        log.info("resuming %s after round %d", run_dir, state.round)
        return state
    (run_dir / metrics.METRICS).unlink(missing_ok=True)
    family = models.make(cfg)
    return checkpoint.State(0, family.init_tables(len(prep.vocab), cfg.seed), fingerprint)


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


def run(grid, cfg: Config, run_dir: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    prep = prepare(cfg, run_dir)
    state = initial_state(cfg, run_dir, prep, resume)
    privacy = PrivacySession(cfg, state.extra, public_counts=prep.vocab.counts)  # resolves z before any training
    copies = ServerCopies(state.extra)  # clients' record-level accountants, re-sent after a resume
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
    for rnd in range(state.round + 1, cfg.federation.rounds + 1):
        stop = privacy.budget_stop(rnd)
        if stop:
            log.warning(stop)
            metrics.append(run_dir, {"round": rnd, "event": "privacy_budget_stop", "message": stop})
            privacy.save(state.extra)
            copies.save(state.extra)
            checkpoint.save(run_dir, state)
            break
        clients = drawn.pop(rnd) if rnd in drawn else sample_clients(cfg, active, rnd)
        later = range(rnd + 1, min(rnd + look, cfg.federation.rounds) + 1)
        for r in later:
            if r not in drawn:
                drawn[r] = sample_clients(cfg, active, r)
        record = run_round(grid, cfg, prep, state, rnd, clients, nodes, vocab_record, shapes, privacy, copies,
                           [drawn[r] for r in later])
        entry = privacy.end_round(rnd)
        if entry is not None:
            record["privacy"] = entry
        if cfg.eval.every_round:
            record["quality"] = per_round.figures(cfg, prep.vocab.words, state.tables)
        metrics.append(run_dir, record)
        state.round = rnd
        privacy.save(state.extra)
        copies.save(state.extra)
        checkpoint.save(run_dir, state)
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss']:.4f}")
    bar.close()
    return finalize(cfg, run_dir, prep, state.tables, privacy.summary())


def _messages(cfg: Config, content: RecordDict, clients: list[int], nodes: dict[int, int], copies: ServerCopies,
              rnd: int) -> dict[int, tuple[Message, list[int]]]:
    """Node id → (its train message, the clients it trains): one client per node, or a pool
    node's sampled clients in one message (fedembed/federation/pool.py)."""
    if not cfg.simulation.nodes:
        return {nodes[p]: (Message(content=copies.content_for(p, content), dst_node_id=nodes[p],
                                   message_type=MessageType.TRAIN, group_id=str(rnd)), [p]) for p in clients}
    hosted: dict[int, list[int]] = {}
    for p in clients:
        hosted.setdefault(nodes[p], []).append(p)
    return {n: (Message(content=pool.train_content(content, ps, copies.states), dst_node_id=n,
                        message_type=MessageType.TRAIN, group_id=str(rnd)), ps) for n, ps in hosted.items()}


def run_round(grid, cfg: Config, prep: Prepared, state: checkpoint.State, rnd: int, clients: list[int],
              nodes: dict[int, int], vocab_record, shapes, privacy: PrivacySession,
              copies: ServerCopies | None = None, upcoming: list[list[int]] = ()) -> dict[str, Any]:
    """`upcoming`: the next rounds' clients, already drawn, nearest first (secure aggregation asks
    them for their keys and shares during this round: fedembed/federation/secure_round.py)."""
    t0 = time.perf_counter()
    lr_start, lr_end = learning_rates(cfg, rnd)
    shards = "" if cfg.data.format == DEVICES else str(prep.shard_dir.resolve())  # "": the nodes' own data
    ins = wire.TrainInstruction(rnd, lr_start, lr_end, cfg.seed, privacy.round_config(cfg), shards,
                                vocab_fingerprint=prep.vocab.fingerprint())
    content = wire.train_content(wire.arrays(state.tables), vocab_record, ins)
    down = wire.nbytes(content)
    copies = copies or ServerCopies()
    if cfg.secagg.enabled:  # SecAgg+: the server only learns the sum (fedembed/federation/secure_round.py)
        from fedembed.federation import secure_round

        return secure_round.run_round(grid, cfg, state, rnd, clients, nodes, content, shapes, privacy, copies,
                                      lr_start, upcoming)
    asked = _messages(cfg, content, clients, nodes, copies, rnd)
    timeout = cfg.federation.round_timeout or None
    acc = collector(cfg, shapes)  # running sums, or the rule's per-update collector (robust rules)
    failures: list[str] = []
    rejected: list[str] = []
    up = 0
    loss_sum = examples = 0.0
    limit = cfg.federation.max_update_mb * 2**20
    in_place = getattr(acc, "adds_rows", False) and not privacy.checks_replies
    # A rule that keeps every update (median, Krum, …) gets them in partition order at the end of
    # the round, so that ties (Krum between two holders of a row) break the same way whatever
    # order the replies arrived in; running sums take each reply as it comes.
    held: list[tuple[int, int, RecordDict, dict, dict, dict]] | None = \
        [] if getattr(acc, "keeps_updates", False) else None

    def accept(p: int, reply: RecordDict, m: dict[str, float]) -> None:
        nonlocal loss_sum, examples
        privacy.observe(m)
        if p >= 0:
            copies.observe(p, reply)
        loss_sum += m.get("loss", 0.0) * m.get("examples", 0.0)
        examples += m.get("examples", 0.0)

    def reject(src: int, exc: UpdateError) -> None:
        rejected.append(f"node {src}: {exc}")
        log.warning("round %d: rejected update from node %d: %s", rnd, src, exc)

    def take(p: int, src: int, reply: RecordDict) -> None:
        """One client's update: size, shape and privacy checks, then into the sums."""
        nonlocal up
        size = wire.nbytes(reply)
        up += size
        try:
            if size > limit:
                raise UpdateError(f"update of {size / 2**20:.1f} MB exceeds federation.max_update_mb")
            rows = wire.parse_sparse_reply(reply, shapes) if in_place else None
            if rows is not None:  # plain sums: add the rows where they belong, no dense copy
                values, weights, indices, m = rows
                acc.add_rows(values, weights, indices)
            else:
                tables, weights, m = wire.parse_reply(reply, shapes)
                privacy.check_reply(tables, weights, m)
                if held is not None:
                    held.append((p, src, reply, tables, weights, m))
                    return
                acc.add(tables, weights)
        except UpdateError as exc:
            reject(src, exc)
            return
        accept(p, reply, m)

    msgs = [m for m, _ in asked.values()]
    for reply in stream.send_and_receive(grid, msgs, cfg.federation.max_in_flight, timeout) if msgs else []:
        src = reply.metadata.src_node_id
        parts = asked.get(src, (None, []))[1]
        if reply.has_error():
            failures.extend(f"node {src}: {reply.error.reason}" for _ in parts or [None])
            continue
        if not cfg.simulation.nodes:
            take(parts[0] if parts else -1, src, reply.content)
            continue
        try:
            replies, errors = pool.split_reply(reply.content, parts)
        except UpdateError as exc:
            rejected.extend(f"node {src}: {exc}" for _ in parts)
            log.warning("round %d: rejected the reply of node %d: %s", rnd, src, exc)
            continue
        failures.extend(f"node {src}, client {p}: {why}" for p, why in errors.items())
        for p, sub in replies.items():
            take(p, src, sub)
    for p, src, reply, tables, weights, m in sorted(held or [], key=lambda h: h[0]):
        try:
            acc.add(tables, weights)
        except UpdateError as exc:
            reject(src, exc)
            continue
        accept(p, reply, m)
    missing = len(clients) - acc.count - len(failures) - len(rejected)
    if acc.count == 0 and clients:  # none sampled (Poisson) is a round like any other: noise only
        reasons = "; ".join(failures + rejected) or f"{missing} client(s) did not answer in time"
        raise FedembedError(f"round {rnd}: no client update could be aggregated ({reasons})")
    for f in failures:
        log.warning("round %d: client failed: %s", rnd, f)
    deltas = privacy.aggregate(acc.sums, acc.weights)
    for k, d in deltas.items():
        state.tables[k] += cfg.federation.server_lr * d
    return {"round": rnd, "clients": len(clients), "clients_ok": acc.count, "failed": len(failures) + missing,
            **behaviour.round_counts(cfg, rnd, clients, failures, missing),
            "rejected": len(rejected), "train_loss": loss_sum / max(examples, 1.0), "examples": int(examples),
            "lr": lr_start, "bytes_down": down * len(msgs), "bytes_up": up,
            "seconds": time.perf_counter() - t0}
