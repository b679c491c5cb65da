"""The one in-process grid of the tests: Flower's Grid API over the real ClientApp (client/app.py).

Every message is answered by calling the production ClientApp itself — `app(message, context)`,
which dispatches by message type to the same train, query and SecAgg+ handlers a deployed or
simulated node runs — with a Flower `Context` per node whose `state` persists across rounds,
as a node's does. The server side talks to it exactly as to Flower's grids: `push_messages`,
then `pull_messages` of the ids in flight (fedembed/federation/stream.py). What tests need to
model is an option, never a re-implementation of a handler:

- `per_pull`, `newest_first`: how many replies one pull returns, and in which order; while
  `paused`, pulls return nothing (replies not ready yet);
- `fail`: partitions whose message is answered with an error — a set (every train message), or
  {(round, message type): partitions} for one stage of one round (a SecAgg+ dropout);
- `silent`: partitions that never answer;
- `tamper`: {partition: function(reply content) -> content} (a malicious or broken client);
- `die_at_round`: pushing that round's messages raises KeyboardInterrupt (a killed server);
- `workers`: answer in threads, so a straggler's sleep overlaps the others and a round
  deadline (federation.round_timeout) cuts it off as it would on a real grid;
- `serve`: who answers a partition's message instead of the bare ClientApp — e.g. fedembed's
  in-process SuperNode with a device's policy around the same ClientApp (tests/test_device_policy.py);
- `record`: keep every reply (`seen`, `replies`) for the test to inspect (off for long runs).
"""
from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from flwr.app import Context, Error, Message, RecordDict

from fedembed.federation import wire


def round_of(m: Message) -> int:
    """The round a server message belongs to (its group id is "round" or "round.stage")."""
    group = m.metadata.group_id or ""
    head = group.split(".")[0]
    return int(head) if head.isdigit() else 0


class InProcessGrid:
    def __init__(self, num: int, *, per_pull: int = 0, newest_first: bool = False,
                 fail: set[int] | dict[tuple[int, str], set[int]] | None = None, silent: set[int] = frozenset(),
                 tamper: dict[int, Callable[[RecordDict], RecordDict]] | None = None,
                 die_at_round: int | None = None, workers: int = 0,
                 serve: Callable[[int, Message], Message] | None = None, record: bool = True) -> None:
        from client.app import app

        self.app, self.num = app, num
        self.per_pull, self.newest_first = per_pull, newest_first
        self.paused = False
        self.fail, self.silent, self.tamper = fail or set(), set(silent), tamper or {}
        self.die_at_round, self.serve, self.record = die_at_round, serve, record
        self.nodes = {100 + p: p for p in range(num)}
        self.contexts = {p: Context(run_id=1, node_id=100 + p,
                                    node_config={"partition-id": p, "num-partitions": num},
                                    state=RecordDict(), run_config={}) for p in range(num)}
        self.pool = ThreadPoolExecutor(max_workers=workers) if workers else None
        self.ids = itertools.count()
        self.in_flight: dict[str, Message | Future] = {}
        self.most_in_flight = self.most_training = 0
        self.calls: dict[str, int] = {}                # message type → how many were answered
        self.replies: list[tuple[str, Message]] = []     # (message type, reply) for every answer, errors too
        self.seen: list[tuple[str, RecordDict]] = []     # every reply content sent back, in order
        self.batches: list[list[str]] = []               # each push: its messages' groups ("round.stage")

    # ---- Flower's Grid API
    def get_node_ids(self):
        return list(self.nodes)

    def push_messages(self, messages):
        messages = list(messages)
        if self.die_at_round is not None and any(round_of(m) == self.die_at_round for m in messages):
            raise KeyboardInterrupt(f"killed in round {self.die_at_round}")
        self.batches.append([m.metadata.group_id for m in messages])
        ids = []
        for m in messages:
            msg_id = f"m{next(self.ids)}"
            m.metadata.__dict__["_message_id"] = msg_id   # what a Flower grid sets when it pushes
            ids.append(msg_id)
            if self.nodes[m.metadata.dst_node_id] in self.silent:
                continue
            self.in_flight[msg_id] = self.pool.submit(self._answer, m) if self.pool else m
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        training = sum(1 for m in self.in_flight.values() if isinstance(m, Message)
                       and "node" not in m.content.config_records)
        self.most_training = max(self.most_training, training)
        return ids

    def pull_messages(self, message_ids):
        if self.paused:
            return []
        wanted = set(message_ids)
        ready = [i for i, m in self.in_flight.items() if i in wanted and (not isinstance(m, Future) or m.done())]
        if self.newest_first:
            ready.reverse()
        if self.per_pull:
            ready = ready[:self.per_pull]
        out = []
        for i in ready:
            m = self.in_flight.pop(i)
            out.append(m.result() if isinstance(m, Future) else self._answer(m))
        return out

    def send_and_receive(self, messages, timeout=None):
        """Flower's one-call API, for completeness (fedembed's loop pushes and pulls itself)."""
        from fedembed.federation import stream

        return list(stream.send_and_receive(self, messages, 0, timeout))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    # ---- one node's answer, by the production ClientApp
    def _fails(self, pid: int, m: Message) -> bool:
        if isinstance(self.fail, dict):
            return pid in self.fail.get((round_of(m), m.metadata.message_type), ())
        return pid in self.fail and m.metadata.message_type == "train"

    def _answer(self, m: Message) -> Message:
        pid = self.nodes[m.metadata.dst_node_id]
        mtype = m.metadata.message_type
        self.calls[mtype] = self.calls.get(mtype, 0) + 1
        if self._fails(pid, m):
            return Message(error=Error(code=1, reason=f"client {pid} crashed"), reply_to=m)
        reply = self.serve(pid, m) if self.serve is not None else self.app(m, self.contexts[pid])
        if self.record:
            self.replies.append((mtype, reply))
        if not reply.has_error():
            if pid in self.tamper and "node" not in m.content.config_records:
                reply = Message(content=self.tamper[pid](reply.content), reply_to=m)
            if self.record:
                self.seen.append((mtype, reply.content))
        return reply


def tamper_update(fn) -> Callable[[RecordDict], RecordDict]:
    """A `tamper` entry that edits a plain reply's dense update: fn(tables, weights) -> (tables, weights)."""
    def edit(content: RecordDict) -> RecordDict:
        tables, weights, metrics = wire.parse_reply(content)
        tables, weights = fn(tables, weights)
        return wire.reply_content(tables, weights, metrics, wire.parse_record_dp(content))
    return edit
