"""Graph: an edge list → the node index → one subgraph per client (`[graph]`, fedembed/graph).

The row index is the graph's nodes (a `Vocabulary` of node names, counts = degree in the
training graph). Before anything is split, `graph.holdout` of the edges are held out for link
prediction, with as many non-edges (fedembed/graph/holdout.py); nothing trains on them. Nodes
go to clients by the owner table (`graph.owners`: each owner's nodes whole to one client) or
uniformly at random; a client's shard is the subgraph it holds — its nodes and the edges
touching them — as the CSR rows of its own nodes (fedembed/graph/split.py). Beside the shards,
`graph_eval.npz` keeps what the report needs and no client sees: the held-out pairs, the node
labels and the whole training graph (the centralized baseline walks it).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from fedembed.data.sources import SOURCES
from fedembed.errors import ConfigError

EVAL_FILE = "graph_eval.npz"


class GraphShard(NamedTuple):
    graph: object            # fedembed.graph.csr.Graph: the client's rows only
    owned: np.ndarray        # the node ids it holds


def shard_path(shard_dir: Path, client: int) -> Path:
    return Path(shard_dir) / f"graph_{client:05d}.npz"


def _save_graph(path: Path, g, **extra) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, num_nodes=g.num_nodes, indptr=g.indptr, indices=g.indices, weights=g.weights,
             directed=g.directed, **extra)
    tmp.replace(path)


def _graph(z):
    from fedembed.graph.csr import Graph

    return Graph(int(z["num_nodes"]), z["indptr"], z["indices"], z["weights"], bool(z["directed"]))


@SOURCES.register("graph")
class GraphSource:
    kind = "graph"

    def check(self, cfg) -> None:
        g = cfg.graph
        if not g.edges:
            raise ConfigError(f"graph.edges: model.family = {cfg.model.family!r} trains on a graph; give its edge list")
        if not (g.p > 0 and g.q > 0):
            raise ConfigError(f"graph.p and graph.q must be positive (got p = {g.p}, q = {g.q})")
        if g.walks_per_node < 1 or g.walk_length < 2:
            raise ConfigError("graph.walks_per_node must be at least 1 and graph.walk_length at least 2")
        if not 0.0 <= g.holdout < 1.0:
            raise ConfigError(f"graph.holdout must be in [0, 1), got {g.holdout}")

    def build(self, cfg, shard_dir: Path):
        from fedembed.data.shards import Manifest
        from fedembed.graph.csr import Graph
        from fedembed.graph.edgelist import read_edges, read_node_table
        from fedembed.graph.holdout import split_edges
        from fedembed.graph.split import client_graph, owners_from_table, random_owners
        from fedembed.vocab import Vocabulary

        g, k = cfg.graph, cfg.partition.num_clients
        edges = read_edges(g.edges, g.directed)
        full = Graph.from_edgelist(edges)
        labels = read_node_table(g.labels, edges.index, "label") if g.labels else {}
        if g.owners:
            owners = owners_from_table(full.num_nodes, read_node_table(g.owners, edges.index, "owner"), k)
        else:
            owners = random_owners(full.num_nodes, k, cfg.seed)
        if g.holdout > 0:
            split = split_edges(full, g.holdout, cfg.seed)
            train, pos, neg = split.train, split.pos, split.neg
        else:
            train, pos, neg = full, np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)
        shard_dir.mkdir(parents=True, exist_ok=True)
        held_edges, held_nodes = [], []
        for c in range(k):
            held = client_graph(train, owners, c)
            mine = np.flatnonzero(owners == c)
            _save_graph(shard_path(shard_dir, c), held, owned=mine)
            held_edges.append(int(len(held.indices)))
            held_nodes.append(int(len(mine)))
        names = sorted(set(labels.values()))
        codes = np.full(full.num_nodes, -1, dtype=np.int64)
        for node, lab in labels.items():
            codes[node] = names.index(lab)
        _save_graph(shard_dir / EVAL_FILE, train, pos=pos, neg=neg, labels=codes,
                    label_names=np.array(names, dtype=str))
        vocab = Vocabulary(edges.names, train.degree)
        skipped = [c for c in range(k) if held_edges[c] == 0]
        if len(skipped) == k:
            raise ConfigError(f"graph.edges: no client holds an edge ({g.edges})")
        return vocab, Manifest(k, vocab.fingerprint(), held_edges, held_nodes, held_nodes, skipped)

    def load(self, shard_dir: Path, client: int) -> GraphShard:
        with np.load(shard_path(shard_dir, client)) as z:
            return GraphShard(_graph(z), z["owned"])


def load_eval(shard_dir: Path):
    """(training graph, held-out pairs, non-edges, {node: label}) for the report."""
    with np.load(Path(shard_dir) / EVAL_FILE) as z:
        names = z["label_names"].tolist()
        labels = {int(n): names[int(c)] for n, c in enumerate(z["labels"].tolist()) if c >= 0}
        return _graph(z), z["pos"], z["neg"], labels
