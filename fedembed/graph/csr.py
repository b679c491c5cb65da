"""A graph's adjacency as compressed sparse rows: what the walks read, vectorised.

Rows are sorted by neighbour, so "is x a neighbour of t" (node2vec's bias) is one binary
search over the edge keys t·N + x for a whole batch of walkers, and a weighted neighbour
draw is one binary search into the cumulative weights. An undirected edge is stored in both
rows; a directed one only in its source's row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedembed.graph.edgelist import EdgeList


@dataclass
class Graph:
    num_nodes: int
    indptr: np.ndarray     # [N + 1] int64
    indices: np.ndarray    # [E'] int64, sorted within each row
    weights: np.ndarray    # [E'] float64
    directed: bool

    @classmethod
    def from_arrays(cls, num_nodes: int, src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                    directed: bool = False) -> Graph:
        """Parallel edges are merged (their weights add up), so every (u, v) is one row entry."""
        src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
        if not directed:
            loops = src == dst   # a self-loop appears once in its row
            src, dst, w = (np.concatenate((src, dst[~loops])), np.concatenate((dst, src[~loops])),
                           np.concatenate((w, w[~loops])))
        key = src * num_nodes + dst
        uniq, inverse = np.unique(key, return_inverse=True)
        merged = np.bincount(inverse, weights=w, minlength=len(uniq))
        rows = uniq // num_nodes
        indptr = np.zeros(num_nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=num_nodes), out=indptr[1:])
        return cls(num_nodes, indptr, (uniq % num_nodes).astype(np.int64), merged, directed)

    @classmethod
    def from_edgelist(cls, edges: EdgeList) -> Graph:
        return cls.from_arrays(edges.num_nodes, edges.src, edges.dst, edges.weights, edges.directed)

    @property
    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def keys(self) -> np.ndarray:
        """Sorted edge keys u·N + v (rows are sorted, and so are their neighbours)."""
        rows = np.repeat(np.arange(self.num_nodes, dtype=np.int64), self.degree)
        return rows * self.num_nodes + self.indices

    def has_edges(self, u: np.ndarray, v: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        keys = self.keys() if keys is None else keys
        q = np.asarray(u, np.int64) * self.num_nodes + np.asarray(v, np.int64)
        pos = np.minimum(np.searchsorted(keys, q), max(len(keys) - 1, 0))
        return (keys[pos] == q) if len(keys) else np.zeros(len(q), dtype=bool)

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(src, dst, weight) of every stored row entry (an undirected edge twice)."""
        rows = np.repeat(np.arange(self.num_nodes, dtype=np.int64), self.degree)
        return rows, self.indices, self.weights

    def restrict_rows(self, keep: np.ndarray) -> Graph:
        """The same node ids, with the rows of nodes not in `keep` (bool [N]) emptied: what a
        client knows when it holds those nodes and the edges touching them."""
        rows, dst, w = self.edges()
        mask = keep[rows]
        return Graph(self.num_nodes, np.concatenate(([0], np.cumsum(np.where(keep, self.degree, 0)))).astype(np.int64),
                     dst[mask], w[mask], self.directed)
