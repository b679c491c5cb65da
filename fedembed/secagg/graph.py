"""SecAgg+'s sparse communication graph: each client masks with, and shares to, k neighbours.

Bell et al. (2020) replace SecAgg's complete graph by a random k-regular one with
k = O(log n), so a client's work and messages grow with log n, not n. As there (and in
Flower's SecAgg+), the graph is a Harary graph H(k, n) — a ring where each node links to
the k/2 nodes on each side — over a fresh random permutation of the round's clients. The
permutation comes from OS entropy: a graph known in advance helps nobody, but it costs nothing
to keep it unpredictable. With n ≤ k + 1 it is the complete graph (SecAgg).
"""
from __future__ import annotations

import math
import secrets


def auto_degree(n: int) -> int:
    """An even k ≈ 3·log2(n) (20 for 100 clients), at most n − 1."""
    k = 2 * math.ceil(1.5 * math.log2(max(n, 2)))
    return min(k, n - 1)


def harary(ids: list[int], k: int) -> dict[int, list[int]]:
    """Neighbours of each id (not including itself), symmetric, each list sorted."""
    n = len(ids)
    if n <= k + 1:
        return {u: sorted(v for v in ids if v != u) for u in ids}
    order = list(ids)
    secrets.SystemRandom().shuffle(order)
    half = k // 2
    out: dict[int, set[int]] = {u: set() for u in ids}
    for i, u in enumerate(order):
        for d in range(1, half + 1):
            v = order[(i + d) % n]
            out[u].add(v)
            out[v].add(u)
    return {u: sorted(vs) for u, vs in out.items()}
