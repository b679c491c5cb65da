"""node2vec's second-order biased random walks (Grover & Leskovec 2016), all walkers at once.

From node v, having come from t, the next node x is drawn with probability proportional to
w(v, x)·α(t, x), α = 1/p if x = t (return), 1 if x is a neighbour of t, 1/q otherwise
(DeepWalk is p = q = 1). The reference implementation precomputes an alias table per edge,
O(Σ deg²) memory; here each step draws x by weight alone and accepts it with probability
α/max(α) (rejection sampling, as KnightKing does), which gives exactly the same distribution
with no per-edge tables, vectorised over every walker still rejecting. A walk stops early at a
node with no out-edges — in a client's subgraph, a node held by another client, whose edges
the client does not know (fedembed/graph/split.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedembed.graph.csr import Graph


@dataclass(frozen=True)
class WalkParams:
    walks_per_node: int = 10
    walk_length: int = 40
    p: float = 1.0
    q: float = 1.0

    def __post_init__(self) -> None:
        if self.walks_per_node < 1 or self.walk_length < 1:
            raise ValueError("walks_per_node and walk_length must be at least 1")
        if not (self.p > 0 and self.q > 0):
            raise ValueError(f"p and q must be positive, got p={self.p}, q={self.q}")


class Walker:
    """Draws walks on one graph; the cumulative weights and edge keys are built once."""

    def __init__(self, graph: Graph, params: WalkParams) -> None:
        self.g, self.p = graph, params
        self.cum = np.cumsum(graph.weights)
        ext = np.concatenate(([0.0], self.cum))
        self.row_base = ext[graph.indptr[:-1]]                      # weight before each row
        self.row_total = ext[graph.indptr[1:]] - self.row_base
        self.keys = graph.keys()
        self.alpha_max = max(1.0 / params.p, 1.0, 1.0 / params.q)

    def _draw(self, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One neighbour of each v (all with out-edges), drawn by edge weight."""
        r = self.row_base[v] + rng.random(len(v)) * self.row_total[v]
        pos = np.searchsorted(self.cum, r, side="right")
        pos = np.clip(pos, self.g.indptr[v], self.g.indptr[v + 1] - 1)   # float ties at a row's end
        return self.g.indices[pos]

    def _step(self, t: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Second-order step: propose by weight, accept with α(t, x)/max α, redraw the rejected."""
        out = np.empty(len(v), dtype=np.int64)
        todo = np.arange(len(v))
        p, q = self.p.p, self.p.q
        while len(todo):
            x = self._draw(v[todo], rng)
            if p == 1.0 and q == 1.0:
                out[todo] = x
                break
            tt = t[todo]
            alpha = np.where(x == tt, 1.0 / p, np.where(self.g.has_edges(tt, x, self.keys), 1.0, 1.0 / q))
            ok = rng.random(len(todo)) * self.alpha_max < alpha
            out[todo[ok]] = x[ok]
            todo = todo[~ok]
        return out

    def walks(self, starts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[len(starts), walk_length] node ids, -1 after a walk stopped early."""
        n, length = len(starts), self.p.walk_length
        out = np.full((n, length), -1, dtype=np.int64)
        out[:, 0] = starts
        alive = np.flatnonzero(self.g.degree[starts] > 0)
        for step in range(1, length):
            if not len(alive):
                break
            cur = out[alive, step - 1]
            nxt = self._draw(cur, rng) if step == 1 else self._step(out[alive, step - 2], cur, rng)
            out[alive, step] = nxt
            alive = alive[self.g.degree[nxt] > 0]
        return out

    def corpus(self, starts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """`walks_per_node` walks from every start, shuffled each pass, as (ids, bounds): the
        token stream and sentence ends the word2vec trainer takes (a walk is a sentence)."""
        rng = np.random.default_rng(seed)
        parts = []
        for _ in range(self.p.walks_per_node):
            parts.append(self.walks(rng.permutation(np.asarray(starts, np.int64)), rng))
        return to_sentences(np.concatenate(parts) if parts else np.zeros((0, self.p.walk_length), np.int64))


def to_sentences(walks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padded walks [W, L] (-1 = none) → (ids, bounds); a walk of one node is dropped (no context)."""
    lengths = (walks >= 0).sum(1)
    walks = walks[lengths > 1]
    lengths = lengths[lengths > 1]
    ids = walks[walks >= 0]
    return ids.astype(np.int64), np.cumsum(lengths).astype(np.int64)


def walk(graph: Graph, params: WalkParams, seed: int, starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Walks from every node with edges (or from `starts`), as (ids, bounds)."""
    if starts is None:
        starts = np.flatnonzero(graph.degree > 0)
    return Walker(graph, params).corpus(starts, seed)
