"""The plain round transport: every sampled client's update reaches the server as it is.

One train message per client, or one per pool node naming its sampled clients
(fedembed/federation/pool.py); replies are pulled as they arrive (fedembed/federation/stream.py)
and each client's update goes to the `ReplySink`, which checks it and folds it into the rule's
collector. The server therefore sees individual updates: this is the transport for robust
rules and for runs that turn SecAgg+ off.
"""
from __future__ import annotations

import logging

from flwr.app import Message, MessageType, RecordDict

from fedembed.errors import FedembedError, UpdateError
from fedembed.federation import behaviour, pool, stream, wire
from fedembed.federation.accept import ReplySink
from fedembed.federation.record_copies import ServerCopies
from fedembed.federation.transport import Collected, RoundPlan

log = logging.getLogger(__name__)


class PlainTransport:
    name = "plain"

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def messages(self, plan: RoundPlan, copies: ServerCopies) -> dict[int, tuple[Message, list[int]]]:
        """Node id → (its train message, the clients it trains): one client per node, or a pool
        node's sampled clients in one message (fedembed/federation/pool.py)."""
        content, rnd = plan.content, plan.rnd
        if not self.cfg.simulation.nodes:
            return {plan.nodes[p]: (Message(content=copies.content_for(p, content), dst_node_id=plan.nodes[p],
                                            message_type=MessageType.TRAIN, group_id=str(rnd)), [p])
                    for p in plan.clients}
        hosted: dict[int, list[int]] = {}
        for p in plan.clients:
            hosted.setdefault(plan.nodes[p], []).append(p)
        return {n: (Message(content=pool.train_content(content, ps, copies.states), dst_node_id=n,
                            message_type=MessageType.TRAIN, group_id=str(rnd)), ps) for n, ps in hosted.items()}

    def collect(self, grid, plan: RoundPlan, sink: ReplySink) -> Collected:
        cfg, rnd = self.cfg, plan.rnd
        asked = self.messages(plan, sink.copies)
        msgs = [m for m, _ in asked.values()]
        for reply in stream.send_and_receive(grid, msgs, cfg.federation.max_in_flight,
                                             cfg.federation.round_timeout or None) if msgs else []:
            src = reply.metadata.src_node_id
            parts = asked.get(src, (None, []))[1]
            if reply.has_error():
                for _ in parts or [None]:
                    sink.failed(f"node {src}: {reply.error.reason}")
                continue
            if not cfg.simulation.nodes:
                sink.take(parts[0] if parts else -1, src, reply.content)
                continue
            self._take_pooled(sink, src, reply.content, parts)
        sink.close()
        acc = sink.collector
        missing = len(plan.clients) - acc.count - len(sink.failures) - len(sink.rejected)
        if acc.count == 0 and plan.clients:  # none sampled (Poisson) is a round like any other: noise only
            reasons = "; ".join(sink.failures + sink.rejected) or f"{missing} client(s) did not answer in time"
            raise FedembedError(f"round {rnd}: no client update could be aggregated ({reasons})")
        for f in sink.failures:
            log.warning("round %d: client failed: %s", rnd, f)
        record = {"clients_ok": acc.count, "failed": len(sink.failures) + missing,
                  **behaviour.round_counts(cfg, rnd, plan.clients, sink.failures, missing),
                  "rejected": len(sink.rejected), "bytes_down": wire.nbytes(plan.content) * len(msgs),
                  "bytes_up": sink.bytes_up}
        return Collected(acc.sums, acc.weights, acc.count, record)

    def _take_pooled(self, sink: ReplySink, src: int, content: RecordDict, parts: list[int]) -> None:
        if pool.is_cohort(content):                  # FedSGD users summed on the node
            try:
                users, errors = pool.cohort_users(content, parts)
            except UpdateError as exc:
                sink.rejected.extend(f"node {src}: {exc}" for _ in parts)
                log.warning("round %d: rejected the reply of node %d: %s", sink.rnd, src, exc)
                return
            for p, why in errors.items():
                sink.failed(f"node {src}, client {p}: {why}")
            if users:
                sink.take_cohort(src, content, users)
            return
        try:
            replies, errors = pool.split_reply(content, parts)
        except UpdateError as exc:
            sink.rejected.extend(f"node {src}: {exc}" for _ in parts)
            log.warning("round %d: rejected the reply of node %d: %s", sink.rnd, src, exc)
            return
        for p, why in errors.items():
            sink.failed(f"node {src}, client {p}: {why}")
        for p, sub in replies.items():
            sink.take(p, src, sub)
