"""The mf family's evaluation: Recall@K and NDCG@K on each user's held-out interactions.

- Federated: each user's row is rebuilt from the final global items on the user's own training
  interactions (as its device would: Federated Reconstruction's evaluation), then every item the
  user did not train on is scored. In the simulation this runs on the server, over the shards.
- Centralized: the same model and alternation (rebuild the user rows, then update the items) with
  every training interaction in one place, for as many passes as the federation made, evaluated
  the same way.
- Popularity: items ranked by their training interaction count.

Recall@K = hits / min(K, held-out items); NDCG@K with binary relevance; every held-out interaction
counts as relevant. MSE runs add RMSE on the held-out ratings. At most EVAL_USERS users (a seeded
draw) are scored, QUICK_USERS per round with `eval.every_round`.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from fedembed.run_view import FamilyReport, RunView

EVAL_USERS, QUICK_USERS = 5000, 500
_CHUNK = 256


class Users:
    """The users scored: for each, its training items, its held-out items (and ratings), keyed (client, user)."""

    def __init__(self, run: RunView, limit: int) -> None:
        from fedembed.data.sources.ratings import load_heldout

        held = load_heldout(run.shard_dir)
        active = set(run.clients)
        keys = sorted({(int(c), int(u)) for c, u in zip(held.clients, held.users) if int(c) in active})
        if len(keys) > limit:
            pick = np.random.default_rng([run.cfg.seed, 0xE7A1]).choice(len(keys), size=limit, replace=False)
            keys = [keys[i] for i in sorted(pick)]
        self.keys = keys
        want = set(keys)
        self.test: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for c, u, i, r in zip(held.clients, held.users, held.items, held.ratings):
            if (int(c), int(u)) in want:
                self.test.setdefault((int(c), int(u)), []).append((int(i), float(r)))

    def clients(self) -> list[int]:
        return sorted({c for c, _ in self.keys})


def shards(run: RunView):
    from fedembed.data.sources.ratings import RatingsSource

    src = RatingsSource()
    return {c: src.load(run.shard_dir, c) for c in run.clients}


def _scores(p: np.ndarray, items: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return p @ items.T + bias[:, 0][None, :]


def rank_metrics(score_rows, train_items: list[np.ndarray], tests: list[list[tuple[int, float]]],
                 k: int) -> dict[str, float]:
    """Mean Recall@K and NDCG@K over users; `score_rows(lo, hi)` gives users lo..hi's scores [n, I]."""
    recalls, ndcgs = [], []
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    for lo in range(0, len(tests), _CHUNK):
        hi = min(lo + _CHUNK, len(tests))
        s = np.array(score_rows(lo, hi), dtype=np.float64)
        for r in range(hi - lo):
            s[r, train_items[lo + r]] = -np.inf
        kk = min(k, s.shape[1])
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable"), 1)
        for r in range(hi - lo):
            rel = {i for i, _ in tests[lo + r]}
            hits = np.array([t in rel for t in top[r]], dtype=np.float64)
            recalls.append(hits.sum() / min(k, len(rel)))
            ideal = discount[:min(k, len(rel))].sum()
            ndcgs.append(float(hits @ discount[:kk]) / ideal)
    return {f"recall@{k}": float(np.mean(recalls)) if recalls else None,
            f"ndcg@{k}": float(np.mean(ndcgs)) if ndcgs else None, "users": len(tests)}


def _rmse(pred: list[float], tests: list[list[tuple[int, float]]]) -> float | None:
    truth = [r for t in tests for _, r in t]
    return float(np.sqrt(np.mean((np.array(pred) - np.array(truth)) ** 2))) if truth else None


def _evaluate_rows(cfg, users: Users, rows: dict[tuple[int, int], tuple[np.ndarray, float]],
                   train_items: dict[tuple[int, int], np.ndarray], items: np.ndarray, bias: np.ndarray,
                   offset: float) -> dict[str, Any]:
    keys = users.keys
    p = np.stack([rows[key][0] for key in keys]) if keys else np.zeros((0, items.shape[1]), np.float32)
    tests = [users.test[key] for key in keys]
    out = rank_metrics(lambda lo, hi: _scores(p[lo:hi], items, bias), [train_items[key] for key in keys],
                       tests, cfg.mf.k)
    if cfg.mf.loss == "mse":
        pred = [offset + rows[key][1] + bias[i, 0] + float(rows[key][0] @ items[i])
                for key in keys for i, _ in users.test[key]]
        out["rmse"] = _rmse(pred, tests)
    return out


def evaluate_federated(family, run: RunView, quick: bool = False) -> dict[str, Any]:
    """Reconstruct each scored user's row on its own training data from the global items, then rank."""
    return evaluate_tables(family, run, run.tables, QUICK_USERS if quick else EVAL_USERS)


def evaluate_tables(family, run: RunView, tables: dict[str, np.ndarray], limit: int) -> dict[str, Any]:
    import torch

    from fedembed.train.mf import reconstruct

    users = Users(run, limit)
    data = shards(run)
    items, bias = tables["item_vectors"], tables["item_bias"]
    offset = float(tables["offset"][0, 0])
    rows, train_items = {}, {}
    for c in users.clients():
        d = data[c]
        rng = np.random.default_rng([run.cfg.seed, c, 0xE7A1])
        p0, c0 = family.new_users(d.num_users, rng)
        p, cb = torch.tensor(p0), torch.tensor(c0)
        gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        reconstruct(torch.tensor(items), torch.tensor(bias), offset, torch.from_numpy(d.users.astype(np.int64)),
                    torch.from_numpy(d.items.astype(np.int64)), torch.from_numpy(d.ratings), p, cb,
                    family.params, gen)
        for key in (k for k in users.keys if k[0] == c):
            u = key[1]
            rows[key] = (p[u].numpy(), float(cb[u]))
            train_items[key] = d.items[d.users == u]
    return _evaluate_rows(run.cfg, users, rows, train_items, items, bias, offset)


def centralized(family, run: RunView) -> dict[str, Any]:
    """The same model and algorithm with every training interaction in one place: each pass rebuilds
    every user's row on all its interactions (items frozen), then takes one SGD pass over all of
    them on the items (users frozen); as many passes as the federation made over the data, the same
    learning-rate decay; evaluated as the federated model is."""
    import torch

    from fedembed.eval.baseline import baseline_epochs
    from fedembed.train.mf import reconstruct, sgd_epochs

    cfg = run.cfg
    data = shards(run)
    base, us, its, rs = 0, [], [], []
    for d in data.values():
        us.append(d.users.astype(np.int64) + base)
        its.append(d.items.astype(np.int64))
        rs.append(d.ratings)
        base += d.num_users
    rng = np.random.default_rng([cfg.seed, 0xC3])
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    t = family.init_tables(len(run.rows), cfg.seed)
    items, bias, offset = (torch.tensor(t[k]) for k in ("item_vectors", "item_bias", "offset"))
    users = torch.from_numpy(np.concatenate(us))
    pos = torch.from_numpy(np.concatenate(its))
    ratings = torch.from_numpy(np.concatenate(rs).astype(np.float32))
    epochs = baseline_epochs(cfg, len(run.clients))
    lr, lo = cfg.train.lr, cfg.train.min_lr
    p0, c0 = family.new_users(base, rng)
    for e in range(epochs):
        p, cb = (torch.tensor(p0), torch.tensor(c0)) if cfg.mf.user_state == "reconstruct" or e == 0 else (p, cb)
        reconstruct(items, bias, float(offset[0, 0]), users, pos, ratings, p, cb, family.params, gen)
        sgd_epochs(items, bias, offset, p, cb, users, pos, ratings, 1, lr - (lr - lo) * e / epochs,
                   lr - (lr - lo) * (e + 1) / epochs, family.params, rng, gen,
                   torch.zeros(len(items), dtype=torch.float64))
    tables = {"item_vectors": items.numpy(), "item_bias": bias.numpy(), "offset": offset.numpy()}
    out = evaluate_tables(family, run, tables, EVAL_USERS)
    out["epochs"] = epochs
    return out


def popularity(run: RunView) -> dict[str, Any]:
    """Every user gets the same ranking: items by their training interaction count."""
    data = shards(run)
    counts = np.zeros(len(run.rows), dtype=np.float64)
    for d in data.values():
        counts += np.bincount(d.items, minlength=len(run.rows))
    users = Users(run, EVAL_USERS)
    train_items = [data[c].items[data[c].users == u] for c, u in users.keys]
    return rank_metrics(lambda lo, hi: np.tile(counts, (hi - lo, 1)), train_items,
                        [users.test[key] for key in users.keys], run.cfg.mf.k)


def report(family, run: RunView) -> FamilyReport:
    from fedembed.export import export

    k = run.cfg.mf.k
    vectors = run.tables["item_vectors"]
    files = [*export(run.rows.words, vectors, run.run_dir / "embeddings.txt", "word2vec-text"),
             *export(run.rows.words, vectors, run.run_dir / "embeddings.bin", "word2vec-binary")]
    quality = evaluate_federated(family, run)
    figures = [f"recall@{k}", f"ndcg@{k}"] + (["rmse"] if run.cfg.mf.loss == "mse" else [])
    pick = lambda q: {f: q.get(f) for f in figures}  # noqa: E731
    out = FamilyReport(quality, files=files, headline={"federated": pick(quality)})
    if run.cfg.eval.baseline:
        for name, fn in (("centralized", lambda: centralized(family, run)), ("popularity", lambda: popularity(run))):
            t0 = time.perf_counter()
            figs = fn()
            figs["seconds"] = time.perf_counter() - t0
            out.baselines[name] = figs
            out.headline[f"{name} (baseline)"] = pick(figs)
        out.ratios = {f"{f}": (quality[f] / out.baselines["centralized"][f]
                               if quality.get(f) is not None and out.baselines["centralized"].get(f) else None)
                      for f in figures}
    return out
