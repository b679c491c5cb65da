"""Which client holds which nodes, and the subgraph each client then holds.

A client holds its nodes and the edges touching them: it knows the edge (u, v) when it
holds u, and from a node held by another client it knows nothing further, so its walks stop
there (fedembed/graph/walks.py). Nodes are assigned by an owner table (the benchmark's
maintainers: fedembed.graph.edgelist.read_node_table), or at random with a fixed seed.
"""
from __future__ import annotations

import numpy as np

from fedembed.graph.csr import Graph


def random_owners(num_nodes: int, num_clients: int, seed: int) -> np.ndarray:
    """[N] client of each node, uniform at random (fixed by the seed)."""
    return np.random.default_rng(seed).integers(0, num_clients, num_nodes)


def owners_from_table(num_nodes: int, table: dict[int, str], num_clients: int) -> np.ndarray:
    """Owner names (e.g. maintainers) → client ids: each owner is one client when there are at
    most `num_clients` owners; otherwise owners are packed, largest first, onto the client with
    the fewest nodes so far (an owner is never split). Nodes without an owner go, one by one,
    to the smallest client."""
    names: dict[str, list[int]] = {}
    for node, owner in table.items():
        names.setdefault(owner, []).append(node)
    load = np.zeros(num_clients, dtype=np.int64)
    out = np.full(num_nodes, -1, dtype=np.int64)
    for owner in sorted(names, key=lambda o: (-len(names[o]), o)):
        c = int(np.argmin(load))
        out[names[owner]] = c
        load[c] += len(names[owner])
    for node in np.flatnonzero(out < 0):
        c = int(np.argmin(load))
        out[node] = c
        load[c] += 1
    return out


def client_graph(graph: Graph, owners: np.ndarray, client: int) -> Graph:
    """The subgraph client `client` holds: every node id kept, rows only for its own nodes."""
    return graph.restrict_rows(owners == client)
