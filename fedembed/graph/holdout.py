"""Edges held out for link prediction, and as many non-edges to score against them.

Held-out edges are removed from the graph the embeddings are trained on; an edge is only
held out if both its ends keep at least one other edge, so no test node loses every edge
(it would have no walks, hence no vector worth scoring). Negatives are uniformly drawn node
pairs that are not edges of the full graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedembed.graph.csr import Graph


@dataclass
class LinkSplit:
    train: Graph
    pos: np.ndarray    # [M, 2] held-out edges
    neg: np.ndarray    # [M, 2] non-edges


def undirected_edges(graph: Graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each undirected edge once (u ≤ v), with its weight; a directed graph's edges as they are."""
    src, dst, w = graph.edges()
    if graph.directed:
        return src, dst, w
    keep = src <= dst
    return src[keep], dst[keep], w[keep]


def split_edges(graph: Graph, fraction: float, seed: int) -> LinkSplit:
    """Hold out about `fraction` of the edges (self-loops never), with as many negatives."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    src, dst, w = undirected_edges(graph)
    deg = np.bincount(np.concatenate((src, dst)), minlength=graph.num_nodes)
    held = np.zeros(len(src), dtype=bool)
    target, count = int(round(fraction * len(src))), 0
    s_list, d_list = src.tolist(), dst.tolist()
    for e in rng.permutation(len(src)).tolist():
        if count >= target:
            break
        u, v = s_list[e], d_list[e]
        if u != v and deg[u] > 1 and deg[v] > 1:
            held[e] = True
            deg[u] -= 1
            deg[v] -= 1
            count += 1
    train = Graph.from_arrays(graph.num_nodes, src[~held], dst[~held], w[~held], graph.directed)
    pos = np.stack((src[held], dst[held]), 1)
    return LinkSplit(train, pos, negatives(graph, len(pos), rng))


def negatives(graph: Graph, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct node pairs u ≠ v, neither (u, v) nor (v, u) an edge, among nodes with edges."""
    nodes = np.flatnonzero(graph.degree > 0)
    keys = graph.keys()
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []
    while len(out) < count:
        u = nodes[rng.integers(0, len(nodes), 2 * count)]
        v = nodes[rng.integers(0, len(nodes), 2 * count)]
        ok = (u != v) & ~graph.has_edges(u, v, keys) & ~graph.has_edges(v, u, keys)
        for a, b in zip(u[ok].tolist(), v[ok].tolist()):
            pair = (min(a, b), max(a, b))
            if pair not in seen:
                seen.add(pair)
                out.append((a, b))
                if len(out) == count:
                    break
    return np.array(out, dtype=np.int64).reshape(-1, 2)
