"""User/item embeddings: matrix factorisation with Federated Reconstruction (Singhal et al. 2021).

Global tables (federated: row-wise aggregation, SecAgg+, DP, like word vectors): `item_vectors`
[I, D], `item_bias` [I, 1] and `offset` [1, 1] (the mean rating, MSE; not row-indexed: weight 1,
a plain mean). Each user's row lives only on its client: every round the client splits each
user's interactions into a support and a query part, rebuilds the user rows from the global
items on the support (items frozen: exact ridge for MSE, gradient steps for BPR), then updates
the items on the query part (users frozen). Only the items' deltas leave; the user rows stay in
the node's `context.state` (`mf.user_state = "keep"` starts the next reconstruction from them)
and appear in no message.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fedembed.models import FAMILIES, RATINGS, FamilyReport, LocalResult, RunView
from fedembed.models.base import BaseFamily, ones

if TYPE_CHECKING:
    from fedembed.data.sources.ratings import RatingsShard
    from fedembed.privacy.record_dp import PrivateTraining

USER_ROWS, USER_BIAS = "user_vectors", "user_bias"   # the node's private state, never sent
LOSSES, USER_STATES = ("bpr", "mse"), ("reconstruct", "keep")


@FAMILIES.register("mf")
class MatrixFactorization(BaseFamily):
    data_kind = RATINGS
    tables = ("item_vectors", "item_bias", "offset")
    row_tables = ("item_vectors", "item_bias")
    record_dp = False

    def __init__(self, cfg) -> None:
        from fedembed.train.mf import MFParams

        self.cfg, self.dim, m = cfg, cfg.model.dim, cfg.mf
        self.params = MFParams(m.loss, m.reg, m.recon_steps, m.recon_lr, cfg.train.batch_size)

    @classmethod
    def check(cls, cfg) -> None:
        from fedembed.errors import ConfigError

        m = cfg.mf
        if m.loss not in LOSSES:
            raise ConfigError(f"mf.loss: {m.loss!r} is not one of {list(LOSSES)}")
        if m.user_state not in USER_STATES:
            raise ConfigError(f"mf.user_state: {m.user_state!r} is not one of {list(USER_STATES)}")
        for key in ("recon_steps", "k"):
            if getattr(m, key) < 1:
                raise ConfigError(f"mf.{key} must be >= 1, got {getattr(m, key)}")
        for key in ("reg", "recon_lr", "init_std"):
            if not getattr(m, key) >= 0:
                raise ConfigError(f"mf.{key} must be >= 0, got {getattr(m, key)}")
        if not 0.0 < m.support_fraction < 1.0:
            raise ConfigError(f"mf.support_fraction must be in (0, 1), got {m.support_fraction}")
        if cfg.model.init != "random":
            raise ConfigError(f"model.init = {cfg.model.init!r}: the mf family starts from random item rows")
        a = cfg.adversary
        if a.attack == "targeted_poison" or (a.attack == "sybil" and a.sybil_base == "targeted_poison"):
            raise ConfigError("adversary.attack: the targeted attack moves word vectors (in_vectors); "
                              "model.family = \"mf\" has item vectors")

    def init_tables(self, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        items = (rng.standard_normal((vocab_size, self.dim), dtype=np.float32) * self.cfg.mf.init_std)
        return {"item_vectors": items.astype(np.float32), "item_bias": np.zeros((vocab_size, 1), np.float32),
                "offset": np.zeros((1, 1), np.float32)}

    def new_users(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = rng.standard_normal((n, self.dim), dtype=np.float32) * np.float32(self.cfg.mf.init_std)
        return p.astype(np.float32), np.zeros(n, np.float32)

    def train(self, tables: dict[str, np.ndarray], data: RatingsShard, counts: np.ndarray, lr_start: float,
              lr_end: float, seed: int, private: PrivateTraining | None = None,
              state: dict[str, np.ndarray] | None = None) -> LocalResult:
        import torch

        from fedembed.train.mf import reconstruct, sgd_epochs

        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        state = {} if state is None else state
        kept = self.cfg.mf.user_state == "keep" and state.get(USER_ROWS) is not None \
            and len(state[USER_ROWS]) == data.num_users
        p0, c0 = (state[USER_ROWS], state[USER_BIAS]) if kept else self.new_users(data.num_users, rng)
        items = torch.tensor(tables["item_vectors"])
        bias = torch.tensor(tables["item_bias"])
        offset = torch.tensor(tables["offset"])
        p, c = torch.tensor(p0), torch.tensor(c0)
        users, pos, ratings = (torch.from_numpy(a.astype(np.int64 if a.dtype != np.float32 else np.float32))
                               for a in (data.users, data.items, data.ratings))
        s, q = (torch.from_numpy(m) for m in support_query(data.users, self.cfg.mf.support_fraction, rng))
        reconstruct(items, bias, float(offset[0, 0]), users[s], pos[s], ratings[s], p, c, self.params, gen)
        touched = torch.zeros(len(items), dtype=torch.float64)
        loss, seen = sgd_epochs(items, bias, offset, p, c, users[q], pos[q], ratings[q],
                                self.cfg.train.local_epochs, lr_start, lr_end, self.params, rng, gen, touched)
        state[USER_ROWS], state[USER_BIAS] = p.numpy(), c.numpy()        # stays on the node
        local = {"item_vectors": items.numpy(), "item_bias": bias.numpy(), "offset": offset.numpy()}
        weights = {"item_vectors": touched.numpy(), "item_bias": touched.numpy().copy(),
                   **ones(tables, ("offset",))}
        return LocalResult(local, weights, loss / max(seen, 1), seen, len(data.items))

    def word_vectors(self, tables: dict[str, np.ndarray], words: list[str] | None = None) -> np.ndarray:
        return tables["item_vectors"]

    def evaluate(self, run: RunView, quick: bool = False) -> dict[str, Any]:
        from fedembed.eval import ranking

        return ranking.evaluate_federated(self, run, quick)

    def round_figures(self, run: RunView) -> dict[str, Any]:
        q = self.evaluate(run, quick=True)
        return {k: q[k] for k in (f"recall@{self.cfg.mf.k}", f"ndcg@{self.cfg.mf.k}") if k in q}

    def report(self, run: RunView) -> FamilyReport:
        from fedembed.eval import ranking

        return ranking.report(self, run)


def support_query(users: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Masks of each user's support interactions (⌈fraction·n⌉ of its n, drawn) and query ones (the
    rest); a user with a single interaction uses it for both."""
    n = len(users)
    order = rng.permutation(n)
    by_user = order[np.argsort(users[order], kind="stable")]
    counts = np.bincount(users, minlength=int(users.max()) + 1 if n else 0)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(n, dtype=np.int64)
    rank[by_user] = np.arange(n) - np.repeat(starts, counts)
    cut = np.ceil(fraction * counts[users]).astype(np.int64)
    support = rank < cut
    return support, ~support | (counts[users] == 1)
