"""Host a scenario's clients on the SuperNodes `flwr run` gives it, however many there are.

`fedembed simulate` starts as many simulated nodes as the scenario needs (one per client, or
`simulation.nodes`). Under `flwr run .` the federation's size is Flower's: 2 SuperNodes by
default, `--federation-config "num-supernodes=N"` otherwise, each told its index and N in its
node config (`partition-id`, `num-partitions`). The ServerApp asks one node for N and hosts the
scenario's clients on the N nodes: one node per client when N = partition.num_clients, a pool
of N nodes otherwise (fedembed/federation/pool.py, with SecAgg+ fedembed/federation/pool_batch.py);
hosting changes nothing in what is computed, only where. More nodes than clients is refused.
"""
from __future__ import annotations

import dataclasses
import time

from fedembed.config import Config
from fedembed.errors import ConfigError, FedembedError


def count(grid, wait_s: float = 120.0) -> int:
    """N, the federation's SuperNodes, as its first node reports it (its `num-partitions`)."""
    from flwr.app import Message, MessageType

    from fedembed.federation import stream, wire

    deadline = time.monotonic() + wait_s
    nodes = list(grid.get_node_ids())
    while not nodes and time.monotonic() < deadline:
        time.sleep(0.5)
        nodes = list(grid.get_node_ids())
    if not nodes:
        raise FedembedError(f"no SuperNode connected within {wait_s:.0f}s")
    ask = Message(content=wire.node_content(-1, -1), dst_node_id=nodes[0], message_type=MessageType.QUERY)
    for reply in stream.send_and_receive(grid, [ask], 0, wait_s):
        if reply.has_error():
            raise FedembedError(f"node {reply.metadata.src_node_id} failed to report its node config: "
                                f"{reply.error.reason}")
        return wire.parse_node(reply.content)[1]
    raise FedembedError(f"node {nodes[0]} did not report its node config within {wait_s:.0f}s")


def fit(cfg: Config, supernodes: int) -> Config:
    """`cfg` with `simulation.nodes` set so that its clients are hosted on `supernodes` nodes."""
    clients = cfg.partition.num_clients
    if supernodes < 1 or supernodes > clients:
        raise ConfigError(f"the federation has {supernodes} SuperNode(s) and the scenario {clients} clients "
                          f"(partition.num_clients): give `flwr run` --federation-config \"num-supernodes=N\" "
                          f"with 1 <= N <= {clients}")
    nodes = 0 if supernodes == clients else supernodes
    if nodes == cfg.simulation.nodes:
        return cfg
    return dataclasses.replace(cfg, simulation=dataclasses.replace(cfg.simulation, nodes=nodes))


def describe(cfg: Config) -> str:
    clients, nodes = cfg.partition.num_clients, cfg.simulation.nodes
    if not nodes:
        return f"{clients} clients, one SuperNode each"
    return f"{clients} clients on a pool of {nodes} SuperNodes (node k hosts the partitions p with p % {nodes} == k)"
