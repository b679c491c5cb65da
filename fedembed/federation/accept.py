"""Accepting a round's replies: the one place a client's answer is checked, counted and kept.

Both transports hand replies here. A plain reply is size-checked, parsed, checked by the
privacy session (an unclipped update under user-level DP is refused) and folded into the
rule's collector; a secure (masked) reply's vector goes into the SecAgg+ sum instead, and it
comes here with no metrics (their sums come from the vector: `summed`). Either way `accept` does the rest once: the privacy session
observes the reply's privacy metrics, the server keeps the client's record-level accountant
state, the training loss is averaged, and the run's observers (fedembed/observe.py) see what
the server received.
"""
from __future__ import annotations

import logging

from flwr.app import RecordDict

from fedembed.aggregate.accumulate import Collector
from fedembed.errors import UpdateError
from fedembed.federation import wire
from fedembed.federation.record_copies import ServerCopies
from fedembed.observe import Observation, Observers

log = logging.getLogger(__name__)


class ReplySink:
    def __init__(self, cfg, rnd: int, privacy, copies: ServerCopies, collector: Collector,
                 shapes: dict[str, tuple[int, ...]], observers: Observers | None = None) -> None:
        self.cfg, self.rnd, self.privacy, self.copies = cfg, rnd, privacy, copies
        self.collector, self.shapes, self.observers = collector, shapes, observers or Observers()
        self.failures: list[str] = []
        self.rejected: list[str] = []
        self.bytes_up = 0
        self.loss_sum = self.examples = 0.0
        self.loss_known = True
        self.limit = cfg.federation.max_update_mb * 2**20
        # Plain sums take a sparse reply's rows in place; a check of the dense tables needs them expanded.
        self.in_place = collector.adds_rows and not privacy.checks_replies
        # A rule that keeps every update (median, Krum, …) gets them in partition order at `close`, so
        # that ties (Krum between two holders of a row) break the same way whatever order the replies
        # arrived in; running sums take each reply as it comes.
        self.held: list[tuple[int, int, RecordDict, dict, dict, dict]] | None = \
            [] if collector.keeps_updates else None

    def failed(self, why: str) -> None:
        """A client that answered with an error (a dropout, a crash)."""
        self.failures.append(why)

    def reject(self, src: int, exc: UpdateError) -> None:
        self.rejected.append(f"node {src}: {exc}")
        log.warning("round %d: rejected update from node %d: %s", self.rnd, src, exc)

    def take(self, p: int, src: int, reply: RecordDict) -> None:
        """One client's plain update: size, shape and privacy checks, then into the collector."""
        size = wire.nbytes(reply)
        self.bytes_up += size
        try:
            if size > self.limit:
                raise UpdateError(f"update of {size / 2**20:.1f} MB exceeds federation.max_update_mb")
            rows = wire.parse_sparse_reply(reply, self.shapes) if self.in_place else None
            if rows is not None:  # plain sums: add the rows where they belong, no dense copy
                values, weights, indices, m = rows
                self.collector.add_rows(values, weights, indices)
                self.accept(p, reply, m)
                return
            tables, weights, m = wire.parse_reply(reply, self.shapes)
            self.privacy.check_reply(tables, weights, m)
            if self.held is not None:
                self.held.append((p, src, reply, tables, weights, m))
                return
            self.collector.add(tables, weights)
        except UpdateError as exc:
            self.reject(src, exc)
            return
        self.accept(p, reply, m, Observation(tables, weights))

    def take_cohort(self, src: int, reply: RecordDict, users: list[int]) -> None:
        """A pool node's summed FedSGD update for `users` (fedembed/federation/client.py
        `train_cohort`): checked against what that many clipped users can add, then into the sums
        as that many clients."""
        size = wire.nbytes(reply)
        self.bytes_up += size
        try:
            if size > self.limit:
                raise UpdateError(f"update of {size / 2**20:.1f} MB exceeds federation.max_update_mb")
            tables, weights, m = wire.parse_reply(reply, self.shapes)
            self.privacy.check_sum(tables, weights, m, len(users))
            self.collector.add(tables, weights, clients=len(users))
        except UpdateError as exc:
            self.rejected.extend(f"node {src}: {exc}" for _ in users)
            log.warning("round %d: rejected the cohort of node %d: %s", self.rnd, src, exc)
            return
        self.accept(-1, reply, m)

    def close(self) -> None:
        """Fold in the updates a keeping rule held, in partition order."""
        for p, src, reply, tables, weights, m in sorted(self.held or [], key=lambda h: h[0]):
            try:
                self.collector.add(tables, weights)
            except UpdateError as exc:
                self.reject(src, exc)
                continue
            self.accept(p, reply, m, Observation(tables, weights))
        self.held = [] if self.held is not None else None

    def accept(self, p: int, reply: RecordDict, metrics: dict[str, float], seen: Observation | None = None) -> None:
        """An update that is in the sum: its privacy metrics, accountant state, loss; the observers."""
        self.privacy.observe(metrics)
        if p >= 0:
            self.copies.observe(p, reply)
        self.loss_sum += metrics.get("loss", 0.0) * metrics.get("examples", 0.0)
        self.examples += metrics.get("examples", 0.0)
        if seen is not None and self.observers and p >= 0:
            self.observers.reply(self.rnd, p, seen)

    def summed(self, loss_sum: float | None, examples: float) -> None:
        """A secure round's loss and examples, learnt as sums over its survivors only
        (fedembed/secagg/tally.py): no reply carries them. `loss_sum` None: the round did not sum
        the loss (user- or record-level DP keep it home, an aborted round has none)."""
        self.loss_known = loss_sum is not None
        self.loss_sum, self.examples = loss_sum or 0.0, examples

    @property
    def train_loss(self) -> float | None:
        """Σ loss·examples / Σ examples; None when the round could not learn it."""
        if not self.loss_known:
            return None
        return self.loss_sum / max(self.examples, 1.0)
