"""Scale path: a bounded number of messages in flight, sparse uploads, same tables as before."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict

from fedembed import checkpoint, config as config_mod, metrics
from fedembed.federation import server, stream, wire
from grid_helpers import task_identity_here  # noqa: F401  (autouse fixture: Flower's Message needs a run identity)


class PushPullGrid:
    """Flower's Grid calls over client/app.py's handlers, in process; answers `per_pull` of the
    oldest messages in flight on each pull, and records the most ever in flight."""

    def __init__(self, num: int, per_pull: int = 1):
        from client.app import query, train

        self.handlers = {"query": query, "train": train}
        self.num, self.per_pull = num, per_pull
        self.nodes = {100 + p: p for p in range(num)}
        self.contexts = {p: Context(run_id=1, node_id=100 + p, node_config={"partition-id": p, "num-partitions": num},
                                    state=RecordDict(), run_config={}) for p in range(num)}
        self.ids = itertools.count()
        self.in_flight: dict[str, Message] = {}
        self.most_in_flight = self.most_training = 0

    def get_node_ids(self):
        return list(self.nodes)

    def _answer(self, msg_id: str, m: Message):
        pid = self.nodes[m.metadata.dst_node_id]
        kind = "query" if "node" in m.content.config_records else "train"
        out = self.handlers[kind](m, self.contexts[pid])
        meta = SimpleNamespace(src_node_id=m.metadata.dst_node_id, reply_to_message_id=msg_id)
        return SimpleNamespace(metadata=meta, content=out.content if not out.has_error() else None,
                               error=out.error if out.has_error() else None, has_error=out.has_error)

    def send_and_receive(self, messages, timeout=None):
        return [self._answer(str(next(self.ids)), m) for m in messages]

    def push_messages(self, messages):
        ids = []
        for m in messages:
            ids.append(str(next(self.ids)))
            self.in_flight[ids[-1]] = m
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        training = sum("node" not in m.content.config_records for m in self.in_flight.values())
        self.most_training = max(self.most_training, training)
        return ids

    def pull_messages(self, message_ids):
        ready = [i for i in self.in_flight if i in set(message_ids)][:self.per_pull]
        return [self._answer(i, self.in_flight.pop(i)) for i in ready]


def test_windowed_send_keeps_at_most_window_in_flight_and_returns_every_reply():
    grid = PushPullGrid(7)
    msgs = [Message(content=wire.node_content(-1, -1), dst_node_id=n, message_type="query") for n in grid.nodes]
    replies = list(stream.send_and_receive(grid, msgs, window=3, poll_s=1e-4))
    assert sorted(wire.parse_node(r.content)[0] for r in replies) == list(range(7))
    assert grid.most_in_flight == 3
    assert server.discover_partitions(PushPullGrid(7), expected=7, wait_s=5, window=2) == {p: 100 + p for p in range(7)}


def test_window_zero_sends_everything_at_once():
    grid = PushPullGrid(3)
    msgs = [Message(content=wire.node_content(-1, -1), dst_node_id=n, message_type="query") for n in grid.nodes]
    assert len(list(stream.send_and_receive(grid, msgs, window=0))) == 3 and grid.most_in_flight == 3


def test_replies_are_pulled_with_a_short_backing_off_poll(monkeypatch):
    """Not Flower's 3 s sleep between pulls: the first retries come within milliseconds."""
    grid = PushPullGrid(2)
    grid.per_pull = 0                          # nothing is ready for the first pulls
    sleeps: list[float] = []

    def sleep(s):
        sleeps.append(s)
        if len(sleeps) == 6:
            grid.per_pull = 2

    monkeypatch.setattr(stream.time, "sleep", sleep)
    msgs = [Message(content=wire.node_content(-1, -1), dst_node_id=n, message_type="query") for n in grid.nodes]
    assert len(list(stream.send_and_receive(grid, msgs))) == 2
    assert sleeps == [0.01, 0.02, 0.025, 0.025, 0.025, 0.025]


def test_sparse_uploads_with_a_window_give_the_dense_paths_tables_bit_for_bit(tmp_path, write_scenario):
    runs = {}
    for name, fed in (("dense", {}), ("sparse", {"sparse_upload": True, "max_in_flight": 2})):
        cfg = config_mod.load(write_scenario(f"{name}.toml", federation={"rounds": 2, **fed}))
        grid = PushPullGrid(cfg.partition.num_clients)
        server.run(grid, cfg, tmp_path / name, progress=False)
        runs[name] = (checkpoint.load(tmp_path / name).tables, metrics.read(tmp_path / name), grid.most_training)
    (dense, dense_rows, _), (sparse, sparse_rows, most) = runs["dense"], runs["sparse"]
    for table in dense:  # the same replies in the same order: the same sums, to the last bit
        np.testing.assert_array_equal(dense[table], sparse[table])
    assert most == 2
    for d, s in zip(dense_rows, sparse_rows):
        assert s["clients_ok"] == d["clients_ok"] == 3 and s["train_loss"] == d["train_loss"]
        assert s["bytes_up"] < d["bytes_up"] and s["bytes_down"] == d["bytes_down"]  # 3 clients touch most rows


def test_scale_keys_are_validated():
    with pytest.raises(config_mod.ConfigError, match="federation.max_in_flight"):
        config_mod.load(None, {"federation.max_in_flight": -1})
    with pytest.raises(config_mod.ConfigError, match="federation.sparse_upload"):
        config_mod.load(None, {"federation.sparse_upload": 1})
