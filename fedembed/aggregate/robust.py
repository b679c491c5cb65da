"""What robust rules share: a collector that keeps every client's update, and their config checks.

A weighted mean needs only two sums, which the server can fold replies into (Accumulator) and
secure aggregation can give it. Median, trimmed mean and Krum need each client's update, so
their collector keeps every client's row deltas Δ = table / weight and which rows it touched
(weight > 0). It has the Accumulator's interface (`add`, `count`, `sums`, `weights`), and its
`sums` / `weights` present the rule's result so that the server's unchanged
`divide_rows(sums, weights)` returns it: sums = the robust Δ on rows some client touched,
weights = 1 there and 0 elsewhere (rows nobody touched stay unchanged).

Robust rules look at the weights only as presence (touched or not). The per-row weights are
reported by the client, so an attacker controls them: under the count-weighted mean a claimed
count of 10⁶ takes a row over whatever its delta. Rules are computed row by row, over the
clients that touched the row, in blocks of rows so memory stays at a few block-sized arrays.
"""
from __future__ import annotations

import numpy as np

from fedembed.aggregate.accumulate import expand_rows, validate
from fedembed.errors import ConfigError, UpdateError

_BLOCK_ELEMS = 1 << 22  # rows per block ≈ this / (clients · dim): bounded temporaries


def presence_weights(row_counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """1 for every row the client updated, else 0: the only weight a robust rule trusts."""
    return {k: (c > 0).astype(np.float32) for k, c in row_counts.items()}


class UpdateCollector:
    """Keeps each client's Δ and touched rows; `combine` (one rule) reduces them row by row."""
    keeps_updates = True   # the server adds a round's updates in partition order (ties break the same way)
    adds_rows = False      # a sparse reply is expanded first

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.shapes = shapes
        self.deltas: dict[str, list[np.ndarray]] = {k: [] for k in shapes}
        self.touched: dict[str, list[np.ndarray]] = {k: [] for k in shapes}
        self.count = 0
        self._result: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None

    def add(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray], clients: int = 1) -> None:
        if clients != 1:
            raise UpdateError("a robust rule needs each client's own update, not a cohort's sum")
        validate(tables, weights, self.shapes)
        for k in self.shapes:
            w = np.asarray(weights[k], dtype=np.float64)
            touched = w > 0
            scale = np.divide(1.0, w, out=np.zeros_like(w), where=touched)
            d = (np.asarray(tables[k], dtype=np.float64) * scale[:, None]).astype(np.float32)
            if not np.isfinite(d).all():  # a tiny weight under a large table overflows float32
                raise UpdateError(f"table {k!r} divided by its weights is not finite")
            self.deltas[k].append(d)
            self.touched[k].append(touched)
        self.count += 1
        self._result = None

    def add_rows(self, values: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                 rows: dict[str, np.ndarray]) -> None:
        self.add(*expand_rows(values, weights, rows, self.shapes))

    def combine(self, deltas: np.ndarray, touched: np.ndarray) -> np.ndarray:
        """deltas [n, R, D], touched [n, R] (each row touched by ≥ 1 client) → the rule's [R, D]."""
        raise NotImplementedError

    def _compute(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        if self._result is None:
            sums, weights = {}, {}
            for k, shape in self.shapes.items():
                out = np.zeros(shape, dtype=np.float64)
                hit = np.zeros(shape[0], dtype=np.float64)
                if self.count:
                    touched = np.stack(self.touched[k])               # [n, V]
                    rows = np.flatnonzero(touched.any(axis=0))
                    block = max(1, _BLOCK_ELEMS // max(1, self.count * int(np.prod(shape[1:]))))
                    for s in range(0, len(rows), block):
                        r = rows[s:s + block]
                        d = np.stack([x[r] for x in self.deltas[k]])  # [n, R, D]
                        out[r] = self.combine(d, touched[:, r])
                    hit[rows] = 1.0
                sums[k], weights[k] = out, hit
            self._result = (sums, weights)
        return self._result

    @property
    def sums(self) -> dict[str, np.ndarray]:
        return self._compute()[0]

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return self._compute()[1]


def composes_with_secagg(cfg) -> tuple[bool, str]:
    """Whether the selected rule can run on a secure sum, and why."""
    from fedembed.aggregate import make

    rule = make(cfg)  # an instance: whether it composes may depend on its parameters (norm_bound)
    return rule.composes_with_secagg, rule.secagg_reason


def report(cfg) -> dict[str, object]:
    """report["aggregation"]: the rule and whether it composes with secure aggregation."""
    ok, reason = composes_with_secagg(cfg)
    return {"rule": cfg.federation.aggregate, "composes_with_secagg": ok, "reason": reason}


def check(cfg) -> None:
    """`[robust]` ranges, and the combinations that cannot work, each naming the keys."""
    r, rule = cfg.robust, cfg.federation.aggregate
    if not 0.0 <= r.trim_fraction < 0.5:  # also refuses NaN
        raise ConfigError(f"robust.trim_fraction must be in [0, 0.5), got {r.trim_fraction}")
    if r.byzantine < 0:
        raise ConfigError(f"robust.byzantine must be >= 0, got {r.byzantine}")
    if r.selected < 0:
        raise ConfigError(f"robust.selected must be >= 0 (0 = clients − byzantine), got {r.selected}")
    for key in ("norm_bound", "row_bound"):
        if not getattr(r, key) >= 0:
            raise ConfigError(f"robust.{key} must be >= 0, got {getattr(r, key)}")
    ok, reason = composes_with_secagg(cfg)
    if cfg.secagg.enabled and not ok:
        raise ConfigError(f"federation.aggregate = {rule!r} cannot run with secagg.enabled = true: {reason}")
    if rule in ROBUST_RULES and cfg.privacy.user_level:
        raise ConfigError(f"federation.aggregate = {rule!r} cannot run with privacy.user_level = true: the "
                          "noise is calibrated to a sum of clipped updates"
                          + (", which already bounds every update's norm (privacy.clip)"
                             if rule == "norm_bound" else ", not to a robust statistic"))
    per_round = cfg.federation.clients_per_round or cfg.partition.num_clients
    if rule in ("krum", "multi_krum") and per_round <= 2 * r.byzantine + 2:
        raise ConfigError(f"federation.aggregate = {rule!r} needs more clients per round ({per_round}: "
                          f"federation.clients_per_round, or partition.num_clients when 0) than "
                          f"2·robust.byzantine + 2 = {2 * r.byzantine + 2} (Krum's n > 2f + 2)")


ROBUST_RULES = ("median", "trimmed_mean", "krum", "multi_krum", "norm_bound")

