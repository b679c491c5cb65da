"""Pairs: a JSON Lines file of text pairs → per-client pair shards, held-out evaluation pairs
and public negatives (`[sentence]`, fedembed/sentence).

Whole clients are held out, never single pairs: `sentence.eval_fraction` of the file's clients
(by a seeded hash of their id) give the evaluation pairs, and as many again give the public
negatives record-level DP-SGD ranks against (fedembed/sentence/dp.py) unless
`sentence.public_negatives` names a file of public sentences. The other clients' pairs go to
`partition.num_clients` clients, each file client whole, largest first onto the smallest; a
file without client ids is spread uniformly at random. There is no row-indexed table: the row
index is the one base model, so the run directory's `vocab.tsv` names what was fine-tuned.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fedembed.data.sources import SOURCES
from fedembed.errors import ConfigError

EVAL_FILE, NEGATIVES_FILE = "pairs_eval.jsonl", "negatives.txt"


class PairsShard(NamedTuple):
    anchors: list[str]
    positives: list[str]
    negatives: list[str]     # public sentences (DP-SGD's negatives)
    path: str                # the shard file: a cache key for the frozen features

    @property
    def bounds(self) -> np.ndarray:
        """One record per pair, as record-level DP counts samples (fedembed/privacy/record_dp.py)."""
        return np.arange(1, len(self.anchors) + 1, dtype=np.int64)


def shard_path(shard_dir: Path, client: int) -> Path:
    return Path(shard_dir) / f"pairs_{client:05d}.jsonl"


def write_pairs(path: Path, anchors: list[str], positives: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for a, p in zip(anchors, positives):
            f.write(json.dumps({"anchor": a, "positive": p}, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _bucket(seed: int, name: str) -> float:
    return zlib.crc32(f"{seed}:{name}".encode()) % 10_000 / 10_000


def _pack(sizes: dict[str, int], k: int) -> dict[str, int]:
    load = np.zeros(k, dtype=np.int64)
    out = {}
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        c = int(np.argmin(load))
        out[name] = c
        load[c] += sizes[name]
    return out


@SOURCES.register("pairs")
class PairsSource:
    kind = "pairs"

    def check(self, cfg) -> None:
        from fedembed.sentence.keys import check

        check(cfg)

    def build(self, cfg, shard_dir: Path):
        from fedembed.data.lines import opener, text_lines
        from fedembed.data.shards import Manifest
        from fedembed.sentence.pairs import read_pairs
        from fedembed.vocab import Vocabulary

        s, k = cfg.sentence, cfg.partition.num_clients
        pairs = read_pairs(s.pairs)
        owner = pairs.clients or [str(i) for i in range(len(pairs))]
        ev, pub, train = [], [], []
        for i, c in enumerate(owner):
            b = _bucket(cfg.seed, c)
            (ev if b < s.eval_fraction else pub if b < 2 * s.eval_fraction else train).append(i)
        if not ev or not train:
            raise ConfigError(f"sentence.eval_fraction = {s.eval_fraction}: {len(ev)} evaluation and {len(train)} "
                              f"training pairs in {s.pairs}; each needs some (more clients, or another fraction)")
        if pairs.clients is None:
            client_of = {owner[i]: int(c) for i, c in
                         zip(train, np.random.default_rng(cfg.seed).integers(0, k, len(train)))}
        else:
            sizes: dict[str, int] = {}
            for i in train:
                sizes[owner[i]] = sizes.get(owner[i], 0) + 1
            client_of = _pack(sizes, k)
        if s.public_negatives:
            path = Path(s.public_negatives)
            try:
                fh = opener(path)(path, "rb")
            except OSError as exc:
                raise ConfigError(f"sentence.public_negatives: cannot open {path} ({exc.strerror or exc})") from None
            with fh:
                negatives = [t.strip() for _, t in text_lines(fh, path) if t.strip()]
        else:
            negatives = [pairs.positives[i] for i in pub]
        negatives = negatives[: s.negatives]
        if not negatives and cfg.privacy.record.enabled:
            raise ConfigError("sentence.public_negatives: record-level DP-SGD needs public negatives, and the "
                              "held-out clients gave none; name a file of public sentences")
        shard_dir.mkdir(parents=True, exist_ok=True)
        per = [[] for _ in range(k)]
        for i in train:
            per[client_of[owner[i]]].append(i)
        for c in range(k):
            write_pairs(shard_path(shard_dir, c), [pairs.anchors[i] for i in per[c]],
                        [pairs.positives[i] for i in per[c]])
        write_pairs(shard_dir / EVAL_FILE, [pairs.anchors[i] for i in ev], [pairs.positives[i] for i in ev])
        (shard_dir / NEGATIVES_FILE).write_text("".join(t.replace("\n", " ") + "\n" for t in negatives),
                                                encoding="utf-8")
        counts = [len(p) for p in per]
        vocab = Vocabulary([s.model or "all-MiniLM-L6-v2"], [len(train)])
        skipped = [c for c in range(k) if counts[c] < 2]   # one pair has no in-batch negative
        return vocab, Manifest(k, vocab.fingerprint(), counts, counts, counts, skipped)

    def load(self, shard_dir: Path, client: int) -> PairsShard:
        return load_shard(shard_path(shard_dir, client), Path(shard_dir) / NEGATIVES_FILE)


def load_shard(path: Path, negatives: Path) -> PairsShard:
    from fedembed.sentence.pairs import read_pairs

    p = read_pairs(path) if path.stat().st_size else None
    neg = negatives.read_text(encoding="utf-8").splitlines() if negatives.is_file() else []
    return PairsShard(p.anchors if p else [], p.positives if p else [], neg, str(path))
