"""A threaded in-process grid for server-loop tests without Ray: it calls client/app.py's train
handler (so simulated dropouts are the real error replies) and honours the round deadline the
way Flower's grid does (replies later than the timeout are not returned)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from types import SimpleNamespace

import pytest
from flwr.app import Context, Message, RecordDict

from fedembed.federation import wire


@pytest.fixture(autouse=True)
def task_identity_here(task_identity):
    """Autouse in every module that imports it: Messages are built outside a runtime."""


class _Reply:
    def __init__(self, msg: Message, src: int):
        self.metadata = SimpleNamespace(src_node_id=src)
        self.content = msg.content if not msg.has_error() else None
        self.error = msg.error if msg.has_error() else None

    def has_error(self) -> bool:
        return self.error is not None


class ThreadedGrid:
    """`die_at_round`: raise KeyboardInterrupt when that round's messages are sent (a killed run)."""

    def __init__(self, num: int, die_at_round: int | None = None):
        from client.app import train

        self.train, self.num, self.die_at_round = train, num, die_at_round
        self.nodes = {100 + p: p for p in range(num)}
        self.contexts = {p: Context(run_id=1, node_id=100 + p, node_config={"partition-id": p,
                                                                           "num-partitions": num},
                                    state=RecordDict(), run_config={}) for p in range(num)}
        self.pool = ThreadPoolExecutor(max_workers=2 * num)  # a sleeping straggler must not hold up the next round

    def get_node_ids(self):
        return list(self.nodes)

    def _answer(self, m: Message) -> _Reply:
        node = m.metadata.dst_node_id
        pid = self.nodes[node]
        if "node" in m.content.config_records:
            return _Reply(Message(content=wire.node_content(pid, self.num), reply_to=m), node)
        return _Reply(self.train(m, self.contexts[pid]), node)

    def send_and_receive(self, messages, timeout=None):
        messages = list(messages)
        if self.die_at_round is not None and any(m.metadata.group_id == str(self.die_at_round) for m in messages):
            raise KeyboardInterrupt(f"killed in round {self.die_at_round}")
        futures = [self.pool.submit(self._answer, m) for m in messages]
        done, _ = wait(futures, timeout=timeout)
        return [f.result() for f in futures if f in done]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
