"""Scale path: a bounded number of messages in flight, sparse uploads, same tables as before."""
from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Message

from fedembed import checkpoint, compose, metrics
from fedembed.errors import ConfigError
from fedembed.federation import server, stream, wire
from fedembed.run import federate
from inprocess_grid import InProcessGrid


def test_windowed_send_keeps_at_most_window_in_flight_and_returns_every_reply():
    grid = InProcessGrid(7)
    msgs = [Message(content=wire.node_content(-1, -1), dst_node_id=n, message_type="query") for n in grid.nodes]
    replies = list(stream.send_and_receive(grid, msgs, window=3, poll_s=1e-4))
    assert sorted(wire.parse_node(r.content)[0] for r in replies) == list(range(7))
    assert grid.most_in_flight == 3
    assert server.discover_partitions(InProcessGrid(7), expected=7, wait_s=5, window=2) == {p: 100 + p for p in range(7)}


def test_window_zero_sends_everything_at_once():
    grid = InProcessGrid(3)
    msgs = [Message(content=wire.node_content(-1, -1), dst_node_id=n, message_type="query") for n in grid.nodes]
    assert len(list(stream.send_and_receive(grid, msgs, window=0))) == 3 and grid.most_in_flight == 3


def test_replies_are_pulled_with_a_short_backing_off_poll(monkeypatch):
    """Not Flower's 3 s sleep between pulls: the first retries come within milliseconds."""
    grid = InProcessGrid(2)
    grid.paused = True                         # nothing is ready for the first pulls
    sleeps: list[float] = []

    def sleep(s):
        sleeps.append(s)
        if len(sleeps) == 6:
            grid.paused = False

    monkeypatch.setattr(stream.time, "sleep", sleep)
    msgs = [Message(content=wire.node_content(-1, -1), dst_node_id=n, message_type="query") for n in grid.nodes]
    assert len(list(stream.send_and_receive(grid, msgs))) == 2
    assert sleeps == [0.01, 0.02, 0.025, 0.025, 0.025, 0.025]


def test_sparse_uploads_with_a_window_give_the_dense_paths_tables_bit_for_bit(tmp_path, write_scenario):
    runs = {}
    for name, fed in (("dense", {}), ("sparse", {"sparse_upload": True, "max_in_flight": 2})):
        cfg = compose.load(write_scenario(f"{name}.toml", federation={"rounds": 2, **fed}))
        grid = InProcessGrid(cfg.partition.num_clients)
        federate(grid, cfg, tmp_path / name, progress=False)
        runs[name] = (checkpoint.load(tmp_path / name).tables, metrics.read(tmp_path / name), grid.most_training)
    (dense, dense_rows, _), (sparse, sparse_rows, most) = runs["dense"], runs["sparse"]
    for table in dense:  # the same replies in the same order: the same sums, to the last bit
        np.testing.assert_array_equal(dense[table], sparse[table])
    assert most == 2
    for d, s in zip(dense_rows, sparse_rows):
        assert s["clients_ok"] == d["clients_ok"] == 3 and s["train_loss"] == d["train_loss"]
        assert s["bytes_up"] < d["bytes_up"] and s["bytes_down"] == d["bytes_down"]  # 3 clients touch most rows


def test_scale_keys_are_validated():
    with pytest.raises(ConfigError, match="federation.max_in_flight"):
        compose.load(None, {"federation.max_in_flight": -1})
    with pytest.raises(ConfigError, match="federation.sparse_upload"):
        compose.load(None, {"federation.sparse_upload": 1})
