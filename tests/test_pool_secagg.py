"""SecAgg+ with a pool of nodes hosting its clients (`simulation.nodes`, fedembed/federation/pool_batch.py):
the same sums as one node per client, each hosted client's secrets apart, one message per node
and exchange."""
from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedembed import checkpoint, compose, metrics
from fedembed.federation import pool, pool_batch
from fedembed.run import federate
from fedembed.secagg import messages as msg
from inprocess_grid import InProcessGrid

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(tmp_path, write_scenario, name: str, nodes: int, **secagg):
    cfg = compose.load(write_scenario(f"{name}.toml", partition={"name": "iid", "num_clients": 5},
                                      federation={"rounds": 3, "clients_per_round": 4, "max_row_weight": 0},
                                      simulation={"nodes": nodes}, secagg={"enabled": True, **secagg}))
    grid = InProcessGrid(nodes or cfg.partition.num_clients)
    federate(grid, cfg, tmp_path / name, progress=False)
    return checkpoint.load(tmp_path / name), metrics.read(tmp_path / name), grid


def test_a_pool_of_two_nodes_gives_the_sums_of_one_node_per_client(tmp_path, write_scenario):
    one, one_rows, _ = _run(tmp_path, write_scenario, "per_client", 0)
    two, two_rows, grid = _run(tmp_path, write_scenario, "pooled", 2)
    for name in one.tables:      # 40-bit quantization of ±2^20: a step of 2^−19 per client, value and round
        np.testing.assert_allclose(two.tables[name], one.tables[name], atol=1e-5, rtol=0)
    for a, b in zip(one_rows, two_rows):
        assert "event" not in b and a["clients_ok"] == b["clients_ok"] == 4
        assert a["examples"] == b["examples"] > 0
        assert b["secagg"]["survivors"] == 4 and b["secagg"]["masked"] == 4
    assert set(grid.contexts) == {0, 1}
    # every message to a node was its batch; never two to one node in the same exchange
    assert set(grid.calls) <= {"query", pool_batch.BATCH}
    for batch in grid.batches:
        assert len(batch) <= 2
    # each hosted client's channel key under its own partition, on the node that hosts it
    for node, ctx in grid.contexts.items():
        keyed = {k for k in ctx.state.config_records if k.startswith(msg.STATE_KEYS + ".")}
        assert keyed and all(int(k.rsplit(".", 1)[1]) % 2 == node for k in keyed)


def test_seeded_stage_dropouts_on_a_pool_fail_single_clients_as_on_their_own_nodes(tmp_path, write_scenario):
    drops = {"drop_share": 0.2, "drop_mask": 0.2, "drop_unmask": 0.2, "threshold": 0.51}
    _, one_rows, _ = _run(tmp_path, write_scenario, "per_client", 0, **drops)
    _, two_rows, _ = _run(tmp_path, write_scenario, "pooled", 2, **drops)
    seen = [(r.get("event"), r["clients_ok"], r["secagg"]["dropped"]) for r in one_rows]
    assert [(r.get("event"), r["clients_ok"], r["secagg"]["dropped"]) for r in two_rows] == seen
    assert sum(sum(d.values()) for _, _, d in seen) > 0


def test_a_pool_node_refuses_a_partition_it_does_not_host_and_keeps_the_others():
    from client.app import app
    from flwr.app import Context, Message

    ctx = Context(run_id=1, node_id=7, node_config={"partition-id": 1, "num-partitions": 2}, state=RecordDict(),
                  run_config={})
    keys = msg.record(round=1, seed=0, drop=0.0)
    batch = pool_batch.batch_content({3: (msg.KEYS, keys), 4: (msg.KEYS, msg.record(round=1, seed=0, drop=0.0)),
                                      5: ("train.nothing", msg.record(round=1))})
    reply = app(Message(content=batch, dst_node_id=7, message_type=pool_batch.BATCH, group_id="1.keys"), ctx)
    replies, errors = pool.split_reply(reply.content, [3, 4, 5])
    assert list(replies) == [3] and len(bytes(msg.get(replies[3])["c_pk"])) == 32
    assert "does not host partition 4" in errors[4] and "not a secure-aggregation stage" in errors[5]
    assert set(ctx.state.config_records) == {f"{msg.STATE_KEYS}.3"}


def test_a_client_s_state_is_written_back_and_removed_under_its_partition():
    holder = RecordDict({"secagg_round.2": ConfigRecord({"round": 1}), "other": ConfigRecord({"x": 1})})
    with pool_batch.client_state(holder, 2) as state:
        assert dict(state.config_records[msg.STATE_ROUND]) == {"round": 1}
        del state[msg.STATE_ROUND]
        state[msg.STATE_KEYS] = ConfigRecord({"c_sk": b"k"})
    assert set(holder.config_records) == {"secagg_keys.2", "other"}
    with pytest.raises(RuntimeError):
        with pool_batch.client_state(holder, 2) as state:
            state[msg.STATE_ROUND] = ConfigRecord({"round": 2})
            raise RuntimeError("a stage that failed half-way still keeps what it did")
    assert "secagg_round.2" in holder.config_records
    holder["family_state.2"] = ArrayRecord({"x": Array(np.zeros(2))})      # the family's private arrays too
    with pool_batch.client_state(holder, 2) as state:
        assert "family_state" in state.array_records
        state["family_state"] = ArrayRecord({"x": Array(np.ones(2))})
    assert holder.array_records["family_state.2"]["x"].numpy().tolist() == [1.0, 1.0]
