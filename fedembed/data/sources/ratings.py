"""Ratings: interactions (fedembed/data/ratings_io.py) → the item catalogue → per-client shards.

- The row index is the item catalogue: `vocab.source` a word-list file of item ids (a public
  catalogue), or "builtin" for the items the data holds (the harness's shortcut: in a deployment
  the catalogue is public, the interactions are not), with `vocab.min_count` / `max_size`.
- Each user's interactions (a user's repeated item: the last one) are split: the latest
  `ratings.test_fraction` (by timestamp when every one has one, else a seeded draw) are held out
  for evaluation (`heldout.npz`, read by the report only), the rest is the user's training data.
- Users are the partition's units (fedembed/data/partition: `natural` keeps a user whole, as does
  every partitioner), so a user's row can live on exactly one client.
- A client's shard `client_NNNNN.ratings.npz`: its users' interactions (client-local user index,
  item row, rating). The users' names stay in the run directory (`users.tsv`), not in the shard.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fedembed.data.sources import SOURCES

HELDOUT = "heldout.npz"
USERS = "users.tsv"


class RatingsShard(NamedTuple):
    users: np.ndarray     # int32 client-local user index per interaction
    items: np.ndarray     # int32 item row
    ratings: np.ndarray   # float32
    num_users: int


@dataclass
class HeldOut:
    clients: np.ndarray   # int32, the client holding the user
    users: np.ndarray     # int32, client-local user index
    items: np.ndarray     # int32
    ratings: np.ndarray   # float32


def shard_path(shard_dir: Path, client: int) -> Path:
    return Path(shard_dir) / f"client_{client:05d}.ratings.npz"


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_heldout(shard_dir: Path) -> HeldOut:
    with np.load(Path(shard_dir) / HELDOUT) as z:
        return HeldOut(z["clients"], z["users"], z["items"], z["ratings"])


@SOURCES.register("ratings")
class RatingsSource:
    kind = "ratings"

    def check(self, cfg) -> None:
        from fedembed.config import DEVICES
        from fedembed.data.ratings_io import FORMATS
        from fedembed.errors import ConfigError

        fmt = cfg.data.format
        if fmt == DEVICES:
            raise ConfigError("data.format = \"devices\": ratings are prepared by the server's source "
                              "(a device-side ratings loader is not there yet)")
        if fmt not in ("auto", *FORMATS):
            raise ConfigError(f"data.format = {fmt!r} is not a ratings format: auto, {', '.join(FORMATS)}")
        if cfg.data.corpus == "builtin":
            raise ConfigError("data.corpus: give a ratings file or directory (MovieLens u.data, ratings.csv, "
                              "JSON Lines, Debian Packages); the built-in corpus is text")
        if not 0.0 <= cfg.ratings.test_fraction < 1.0:
            raise ConfigError(f"ratings.test_fraction must be in [0, 1), got {cfg.ratings.test_fraction}")
        if cfg.vocab.holdout:
            raise ConfigError("vocab.holdout holds words out of a text vocabulary; a ratings run has items")
        on = [k for k in ("vocab_inference", "membership", "canary") if getattr(cfg.privacy_attacks, k)]
        if on:
            raise ConfigError(f"privacy_attacks.{on[0]} works on text shards; model.family = "
                              f"{cfg.model.family!r} trains on ratings")

    def build(self, cfg, shard_dir: Path):
        from fedembed import vocab as vocab_mod
        from fedembed.data.ratings_io import read
        from fedembed.errors import CorpusError

        per_user: dict[str, dict[str, tuple[float, float | None]]] = {}
        origin: dict[str, str] = {}
        for x in read(cfg.data.corpus, cfg.data.format):
            per_user.setdefault(x.user, {})[x.item] = (x.rating, x.timestamp)   # a repeat: the last one
            origin.setdefault(x.user, x.origin)
        if not per_user:
            raise CorpusError(f"{cfg.data.corpus} holds no interaction")
        v = cfg.vocab
        if v.source == "builtin":
            counts = Counter(item for items in per_user.values() for item in items)
            rows = vocab_mod.from_counts(counts, v.min_count, v.max_size)
        else:
            rows = vocab_mod.from_word_list(Path(v.source), v.min_count, v.max_size)
        train, test = _split(per_user, rows.index, cfg.ratings.test_fraction, cfg.seed)
        return rows, _write(cfg, shard_dir, rows, train, test, origin)

    def load(self, shard_dir: Path, client: int) -> RatingsShard:
        path = shard_path(shard_dir, client)
        if not path.is_file():
            raise FileNotFoundError(f"no ratings shard for client {client} in {shard_dir}")
        with np.load(path) as z:
            return RatingsShard(z["users"], z["items"], z["ratings"], int(z["num_users"]))


Split = dict[str, list[tuple[int, float]]]


def _split(per_user, index: dict[str, int], fraction: float, seed: int) -> tuple[Split, Split]:
    """Each user's in-catalogue interactions into training and held-out (see the module doc)."""
    train: Split = {}
    test: Split = {}
    for u, (user, items) in enumerate(per_user.items()):
        kept = [(index[i], r, t) for i, (r, t) in items.items() if i in index]
        if not kept:
            continue
        n_test = min(len(kept) - 1, int(round(fraction * len(kept)))) if len(kept) > 1 else 0
        if n_test and fraction > 0:
            n_test = max(n_test, 1)
        if all(t is not None for _, _, t in kept):
            order = sorted(range(len(kept)), key=lambda j: (kept[j][2], kept[j][0]))      # oldest first
        else:
            order = list(np.random.default_rng([seed, u]).permutation(len(kept)))
        cut = len(kept) - n_test
        train[user] = [(kept[j][0], kept[j][1]) for j in order[:cut]]
        if n_test:
            test[user] = [(kept[j][0], kept[j][1]) for j in order[cut:]]
    return train, test


def _write(cfg, shard_dir: Path, rows, train: Split, test: Split, origin: dict[str, str]):
    from fedembed.data.corpus import Document
    from fedembed.data.partition import make as make_partitioner
    from fedembed.data.shards import Manifest
    from fedembed.errors import CorpusError

    k = cfg.partition.num_clients
    part = make_partitioner(cfg.partition.name, k, cfg.seed, cfg)
    users = list(train)
    docs = [Document(u, origin[u], [rows.words[i] for i, _ in train[u]]) for u in users]
    if part.needs_units:
        for i, doc in enumerate(docs):
            part.observe(i, doc)
        part.fit({d.unit: len(d.tokens) for d in docs})
    members: list[list[int]] = [[] for _ in range(k)]
    for i, doc in enumerate(docs):
        members[part.client_of(i, doc)].append(i)
    shard_dir.mkdir(parents=True, exist_ok=True)
    held = {"clients": [], "users": [], "items": [], "ratings": []}
    interactions, user_counts = [0] * k, [0] * k
    names = []
    for c, idx in enumerate(members):
        local = [(j, u, i, r) for j, u in enumerate(idx) for i, r in train[users[u]]]
        arr = np.array([(j, i) for j, _, i, _ in local], dtype=np.int32).reshape(-1, 2)
        _save_npz(shard_path(shard_dir, c), users=arr[:, 0], items=arr[:, 1],
                  ratings=np.array([r for *_, r in local], dtype=np.float32), num_users=np.int64(len(idx)))
        interactions[c], user_counts[c] = len(local), len(idx)
        for j, u in enumerate(idx):
            names.append(f"{c}\t{j}\t{users[u]}\n")
            for i, r in test.get(users[u], []):
                held["clients"].append(c), held["users"].append(j), held["items"].append(i), held["ratings"].append(r)
    _save_npz(shard_dir / HELDOUT, clients=np.array(held["clients"], np.int32), users=np.array(held["users"], np.int32),
              items=np.array(held["items"], np.int32), ratings=np.array(held["ratings"], np.float32))
    (shard_dir.parent / USERS).write_text("".join(names), encoding="utf-8")
    skipped = [c for c in range(k) if interactions[c] < cfg.partition.min_tokens]
    if len(skipped) == k:
        raise CorpusError(f"no client has at least {cfg.partition.min_tokens} interactions (data {cfg.data.corpus})")
    stats = {"partitioner": cfg.partition.name, "label": "none", "labels": [],
             "summary": {"users": len(users), "items": len(rows), "interactions": int(sum(interactions)),
                         "heldout": len(held["items"])},
             "clients": [{"client": c, "tokens": interactions[c], "units": user_counts[c]} for c in range(k)]}
    (shard_dir / "partition_stats.json").write_text(json.dumps(stats, indent=1), encoding="utf-8")
    return Manifest(k, rows.fingerprint(), interactions, user_counts, user_counts, skipped)
