"""DP-FTRL's tree aggregation: noisy prefix sums of the rounds' clipped sums, released one round at a time.

DP-FTRL (Kairouz et al. 2021, "Practical and Private (Deep) Learning without Sampling or
Shuffling") updates the model from the *prefix sum* of the per-round clipped sums g_1..g_t,
w_t = w_0 + η·(Σ_{i≤t} g_i + noise_t), instead of noising each round on its own. The tree
mechanism (Dwork et al. 2010; Chan, Shi & Song 2011) makes noise_t small: a tree node
covering rounds (a, b] holds Σ_{a<i≤b} g_i plus one fresh N(0, σ²) per coordinate, and the
prefix [1, t] is the sum of the O(log t) nodes that cover it, so noise_t has variance
popcount(t)·σ² ≤ (⌊log₂ t⌋ + 1)·σ² while any one round's sum sits in at most ⌊log₂ T⌋ + 1
nodes (which is what the accounting charges, fedembed/privacy/tree_accounting.py).

The nodes are those of a Fenwick tree (a binary indexed tree): one node ends at every round
s and covers (s − lowbit(s), s], lowbit(s) = s & −s; the prefix [1, t] is the nodes on the
path t, t − lowbit(t), … > 0. Only these nodes are ever needed (the right children of the
textbook binary tree never enter a prefix), so exactly one node — one noise draw — is
completed per round, and a round's sum enters only the nodes on the path s, s + lowbit(s),
… ≤ T. That node set is what the release is and what the sensitivity is computed on.

What `TreeAggregator.add` returns is the noisy *increment* prefix_t − prefix_{t−1} =
g_t + ξ_t − Σ(ξ of the nodes that node t replaces in the prefix), so the round loop keeps
one place where the global tables change: `tables += server_lr · increment` (after the
public, data-independent row division, which is linear and so keeps the telescoping),
and after round t the tables are w_0 + η·(noisy prefix sum) — DP-FTRL's iterate — up to
float rounding. A server optimiser (fedembed/server_opt) applied to the increments is
post-processing; momentum on them is Kairouz et al.'s DP-FTRL with momentum.

Restarts ("restart_every", Kairouz et al. §5): every R released rounds the tree starts
afresh. The tables are not reset — the new tree's prefix sums are added to the tables the
old tree left — so each tree contributes its own final prefix noise; a restart bounds the
number of nodes one client's rounds fall into, and the noise std may change at a restart
(and only there: a node's sum must be in one clip's units, see `set_std`).

Node noise is not stored: ξ of node (tree, s) is regenerated from a secret seed, a
per-node stream of NumPy's SeedSequence (spawn key = tree, node, table). Each node is
drawn when it is completed and drawn again once, when a later node replaces it, so a
round costs two table-sized draws on average (each node is replaced at most once), the
memory is one increment, and the state is a few integers and the seed. The seed *is* the
noise: whoever holds it can subtract every node's noise from the released tables and
recover the exact prefix sums. Under the central model the server is trusted with the
clients' sums anyway, so keeping the seed in the checkpoint (`state()`, JSON) is sound —
but only as long as the checkpoint is kept as private as the server's memory: a
checkpoint of a DP-FTRL run is not a public artefact, only the tables (and what is
computed from them) are. The seed comes from the OS's entropy (`new_seed`), never from
the scenario's public `seed`.

Under SecAgg+ the server must not know the noise; `ClientShare` is the distributed form,
sound when the same clients take part in every round of a tree (the cross-silo schedule):
each client runs its own tree of shares with std σ/√m from its own secret seed and adds
its share's increment before masking. See tree_accounting's docstring for why, and what
is charged when a client misses a round.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

STATE_VERSION = 1


def lowbit(s: int) -> int:
    """The largest power of two dividing s (s ≥ 1): the length of the node that ends at s."""
    return s & -s


def prefix_nodes(t: int) -> Iterator[int]:
    """The nodes (by their last round) whose sum is the prefix [1, t]: t, t − lowbit(t), … > 0."""
    while t > 0:
        yield t
        t -= lowbit(t)


def covering_nodes(s: int, length: int) -> Iterator[int]:
    """The nodes of a tree of `length` rounds that hold round s: s, s + lowbit(s), … ≤ length."""
    while s <= length:
        yield s
        s += lowbit(s)


def replaced_nodes(s: int) -> Iterator[int]:
    """The nodes of prefix s − 1 that node s takes the place of in prefix s (its left part)."""
    j, start = s - 1, s - lowbit(s)
    while j > start:
        yield j
        j -= lowbit(j)


def final_noise_factor(steps: int, restart_every: int = 0) -> float:
    """Std of the noise the applied increments leave after `steps` steps, in units of σ:
    √(Σ over trees of popcount(the tree's length)) — each tree leaves its last prefix's noise.
    (Utility, not privacy: restarts lower the sensitivity but leave one prefix noise per tree.)"""
    if restart_every == 0:
        return float(bin(steps).count("1")) ** 0.5
    full, rest = divmod(steps, restart_every)
    return float(full * bin(restart_every).count("1") + bin(rest).count("1")) ** 0.5


def new_seed() -> bytes:
    """A fresh 256-bit secret from the OS: the noise of every node is derived from it."""
    return secrets.token_bytes(32)


def _seed_int(seed: bytes | int) -> int:
    if isinstance(seed, bytes):
        if len(seed) < 16:
            raise ValueError("a tree-noise seed needs at least 128 bits")
        return int.from_bytes(seed, "big")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
        return seed
    raise ValueError(f"a tree-noise seed must be bytes or a non-negative int, got {type(seed).__name__}")


def _name_key(name: str) -> int:
    """A stable 64-bit key for a table name (spawn keys are integers; Python's hash is salted)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


class TreeNoise:
    """The noise of the tree mechanism, as a pure function of (seed, std, restart_every, step).

    `increment(step)` is the noise in prefix(step) − prefix(step − 1) of the tree the step
    falls in (steps are 1-based and count released rounds). Nothing but the seed is kept:
    any step's noise can be recomputed, in any order, which is what a resumed server and a
    client that missed rounds both need.
    """

    def __init__(self, shape_of: Mapping[str, tuple[int, ...]], std: float, seed: bytes | int,
                 restart_every: int = 0) -> None:
        if not std >= 0:
            raise ValueError(f"noise std must be >= 0, got {std}")
        if restart_every < 0:
            raise ValueError(f"restart_every must be >= 0, got {restart_every}")
        self.shape_of = {k: tuple(int(d) for d in v) for k, v in shape_of.items()}
        self.std = float(std)
        self.seed = seed
        self._entropy = _seed_int(seed)
        self.restart_every = int(restart_every)

    def position(self, step: int) -> tuple[int, int]:
        """(tree index from 0, round within that tree from 1) of a 1-based step."""
        if step < 1:
            raise ValueError(f"steps are 1-based, got {step}")
        if self.restart_every == 0:
            return 0, step
        return (step - 1) // self.restart_every, (step - 1) % self.restart_every + 1

    def node(self, tree: int, s: int) -> dict[str, np.ndarray]:
        """Standard normal draws of node s of tree `tree`, one array per table (float64)."""
        out = {}
        for name, shape in self.shape_of.items():
            ss = np.random.SeedSequence(self._entropy, spawn_key=(tree, s, _name_key(name)))
            out[name] = np.random.Generator(np.random.PCG64(ss)).standard_normal(shape)
        return out

    def increment(self, step: int) -> dict[str, np.ndarray]:
        """std·(ξ_s − Σ ξ of the replaced nodes), s the step's round within its tree (float64)."""
        tree, s = self.position(step)
        if self.std == 0:
            return {k: np.zeros(v) for k, v in self.shape_of.items()}
        total = self.node(tree, s)
        for j in replaced_nodes(s):
            for k, a in self.node(tree, j).items():
                total[k] -= a
        return {k: a * self.std for k, a in total.items()}

    def prefix(self, step: int) -> dict[str, np.ndarray]:
        """The noise in the tree's prefix sum at `step` (tests and diagnostics; the round loop needs `increment`)."""
        tree, s = self.position(step)
        total = {k: np.zeros(v) for k, v in self.shape_of.items()}
        for j in prefix_nodes(s):
            for k, a in self.node(tree, j).items():
                total[k] += a
        return {k: a * self.std for k, a in total.items()}


class TreeAggregator:
    """The server's DP-FTRL release (central noise): one `add` per released round.

    `add(round_sums)` takes the round's sums of clipped updates (float64 arrays of the
    shapes given) and returns the noisy increment of the current tree's prefix sum, to be
    applied as `tables += server_lr · increment` (after any data-independent row scaling).
    A round that releases nothing (an aborted secure round) must not call `add`: steps
    count released rounds, and a skipped step would leave its increment out of the sum.
    """

    def __init__(self, shape_of: Mapping[str, tuple[int, ...]], std: float, seed: bytes | int | None = None,
                 restart_every: int = 0, steps: int = 0) -> None:
        self._noise = TreeNoise(shape_of, std, new_seed() if seed is None else seed, restart_every)
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.steps = int(steps)

    @property
    def std(self) -> float:
        return self._noise.std

    @property
    def restart_every(self) -> int:
        return self._noise.restart_every

    @property
    def shape_of(self) -> dict[str, tuple[int, ...]]:
        return dict(self._noise.shape_of)

    @property
    def starts_tree(self) -> bool:
        """Whether the next `add` begins a new tree (the first step, or right after a restart)."""
        return self._noise.position(self.steps + 1)[1] == 1

    def set_std(self, std: float) -> None:
        """Change the node noise std (e.g. to z·C for a new clip C); only when a new tree starts:
        a node's noise must match the units of every round it sums."""
        if not self.starts_tree:
            raise ValueError("the tree noise std can change only when a new tree starts (privacy.restart_every)")
        self._noise = TreeNoise(self._noise.shape_of, std, self._noise.seed, self._noise.restart_every)

    def add(self, round_sums: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The noisy prefix-sum increment of this round (float64), and one step further along the tree."""
        if set(round_sums) != set(self._noise.shape_of):
            raise ValueError(f"round sums have tables {sorted(round_sums)}, expected {sorted(self._noise.shape_of)}")
        for k, a in round_sums.items():
            if tuple(np.shape(a)) != self._noise.shape_of[k]:
                raise ValueError(f"round sum {k!r} has shape {np.shape(a)}, expected {self._noise.shape_of[k]}")
        noise = self._noise.increment(self.steps + 1)
        self.steps += 1
        return {k: np.asarray(round_sums[k], dtype=np.float64) + noise[k] for k in noise}

    def state(self) -> dict[str, Any]:
        """JSON-serialisable; it holds the secret seed (see the module docstring: keep it private)."""
        seed = self._noise.seed
        return {"version": STATE_VERSION, "steps": self.steps, "std": self.std, "restart_every": self.restart_every,
                "seed_hex": seed.hex() if isinstance(seed, bytes) else None,
                "seed_int": None if isinstance(seed, bytes) else str(seed)}

    @classmethod
    def from_state(cls, shape_of: Mapping[str, tuple[int, ...]], state: Mapping[str, Any]) -> "TreeAggregator":
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"tree aggregator state version {state.get('version')!r}, expected {STATE_VERSION}")
        seed: bytes | int = (bytes.fromhex(state["seed_hex"]) if state.get("seed_hex") is not None
                             else int(state["seed_int"]))
        return cls(shape_of, float(state["std"]), seed, int(state["restart_every"]), int(state["steps"]))


class ClientShare:
    """A client's share of distributed tree noise under SecAgg+: `increment(step)` is added to its
    clipped update before masking.

    Each client holds its own secret seed and a tree of std σ/√m (`distributed.share_std`),
    m the clients asked to mask in every round; the shares of the clients present in every
    round of a tree sum to a tree of std σ·√(|H|/m). A client adds noise for a step at most
    once and only for increasing steps: adding the same step's share twice would let the
    server subtract two releases and cancel it.
    """

    def __init__(self, shape_of: Mapping[str, tuple[int, ...]], std: float, seed: bytes | int | None = None,
                 restart_every: int = 0, last_step: int = 0) -> None:
        self._noise = TreeNoise(shape_of, std, new_seed() if seed is None else seed, restart_every)
        self.last_step = int(last_step)

    def increment(self, step: int) -> dict[str, np.ndarray]:
        if step <= self.last_step:
            raise ValueError(f"tree-noise step {step} is not after the last one this client noised ({self.last_step})")
        self.last_step = step
        return self._noise.increment(step)

    def state(self) -> dict[str, Any]:
        """The client's own secret: it stays on the client (e.g. in its node state), never sent."""
        seed = self._noise.seed
        return {"version": STATE_VERSION, "last_step": self.last_step, "std": self._noise.std,
                "restart_every": self._noise.restart_every,
                "seed_hex": seed.hex() if isinstance(seed, bytes) else None,
                "seed_int": None if isinstance(seed, bytes) else str(seed)}

    @classmethod
    def from_state(cls, shape_of: Mapping[str, tuple[int, ...]], state: Mapping[str, Any]) -> "ClientShare":
        seed: bytes | int = (bytes.fromhex(state["seed_hex"]) if state.get("seed_hex") is not None
                             else int(state["seed_int"]))
        return cls(shape_of, float(state["std"]), seed, int(state["restart_every"]), int(state["last_step"]))
