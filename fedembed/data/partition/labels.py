"""Document labels that non-IID partitioners skew over and partition statistics histogram.

A label is chosen by `partition.label`:
  source  the document's origin: built-in `lee` / `wiki`; a directory's top-level
          subdirectory (or the file itself when it sits at the top); a file's name otherwise
  unit    the natural unit (file, JSON Lines `client_id`, built-in article)
  field   a JSON Lines field named by `partition.label_field`
  topic   a topic cluster: spherical k-means on hashed TF-IDF vectors, deterministic from the seed

Labelers see the corpus twice, like the partitioners: `observe` on a first pass (topics fit
there; the others count), then `label` on the pass that writes shards. Everything streams:
`field` reads the JSON Lines file alongside the corpus reader, a topic model keeps only a
bounded reservoir of documents.
"""
from __future__ import annotations

import json
import zlib
from collections import Counter
from pathlib import Path
from typing import IO

import numpy as np

from fedembed.data.corpus import BUILTIN, Document, detect_format
from fedembed.errors import ConfigError, CorpusError

KINDS = ("source", "unit", "field", "topic")
_FEATURES = 2048          # hashed vocabulary of the topic model
_SAMPLE = 5000            # documents the topic model is fitted on (a seeded reservoir)
_ITERATIONS = 30
_RESTARTS = 5
_NAME_WORDS = 30


class Labeler:
    """Label names in order of first appearance; `label` returns an index into `names`."""

    needs_pass = False

    def __init__(self) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self._counts: Counter[int] = Counter()

    def _id(self, name: str) -> int:
        if name not in self._index:
            self._index[name] = len(self.names)
            self.names.append(name)
        return self._index[name]

    def name_of(self, i: int, doc: Document) -> str:
        raise NotImplementedError

    def observe(self, i: int, doc: Document) -> None:
        self._counts[self._id(self.name_of(i, doc))] += 1

    def counts(self) -> np.ndarray:
        """Documents per label seen by `observe` (the first pass)."""
        return np.array([self._counts[j] for j in range(len(self.names))], dtype=np.int64)

    def label(self, i: int, doc: Document) -> int:
        return self._id(self.name_of(i, doc))


class SourceLabeler(Labeler):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt

    def name_of(self, i: int, doc: Document) -> str:
        if self.fmt in (BUILTIN, "dir"):
            return doc.unit.split("/", 1)[0]
        return Path(doc.origin.rsplit(":", 1)[0]).name


class UnitLabeler(Labeler):
    def name_of(self, i: int, doc: Document) -> str:
        return doc.unit


class FieldLabeler(Labeler):
    """Reads `field` from the JSON Lines record each document came from (its origin's line).
    The file is reopened when a pass starts again; the handle closes with the labeler."""

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field
        self._fh: IO[str] | None = None
        self._path = ""
        self._line = 0
        self._last: tuple[int, str] | None = None

    def name_of(self, i: int, doc: Document) -> str:
        if self._last and self._last[0] == i:
            return self._last[1]
        path, _, line = doc.origin.rpartition(":")
        lineno = int(line)
        if self._fh is None or path != self._path or lineno <= self._line:  # a new pass: start again
            if self._fh is not None:
                self._fh.close()
            self._fh, self._path, self._line = open(path, encoding="utf-8-sig"), path, 0
        text = ""
        while self._line < lineno:
            text = self._fh.readline()
            self._line += 1
        if not text:  # the reader and this file disagree: never label from the wrong line
            raise CorpusError(f"{doc.origin}: line not found while reading partition.label_field")
        value = json.loads(text).get(self.field)
        if value is None or isinstance(value, (dict, list)):
            raise CorpusError(f"{doc.origin}: no scalar field {self.field!r} (partition.label_field)")
        self._last = (i, str(value))
        return self._last[1]

    def __del__(self) -> None:
        if self._fh is not None:
            self._fh.close()


def _features(tokens: list[str]) -> dict[int, float]:
    """Hashed term frequencies (crc32: stable across processes, unlike hash())."""
    tf: Counter[int] = Counter(zlib.crc32(t.encode("utf-8")) % _FEATURES for t in tokens)
    return {b: float(n) for b, n in tf.items()}


class TopicModel:
    """Spherical k-means on hashed, log-scaled TF-IDF vectors, fitted on a seeded reservoir."""

    def __init__(self, k: int, seed: int) -> None:
        self.k, self.rng = k, np.random.default_rng([seed, 0x70])
        self._sample: list[dict[int, float]] = []
        self._words: list[list[tuple[str, int]]] = []   # each sampled document's commonest words, for names
        self._seen = 0
        self._df = np.zeros(_FEATURES)
        self.centroids: np.ndarray | None = None
        self.names: list[str] = []
        self.idf = np.ones(_FEATURES)

    def observe(self, doc: Document) -> None:
        f = _features(doc.tokens)
        self._df[list(f)] += 1
        self._seen += 1
        words = Counter(doc.tokens).most_common(_NAME_WORDS)
        if len(self._sample) < _SAMPLE:
            self._sample.append(f)
            self._words.append(words)
        else:
            j = int(self.rng.integers(self._seen))
            if j < _SAMPLE:
                self._sample[j], self._words[j] = f, words

    def _vector(self, f: dict[int, float]) -> np.ndarray:
        v = np.zeros(_FEATURES)
        keys = np.fromiter(f, dtype=np.int64, count=len(f))
        v[keys] = np.log1p(np.fromiter(f.values(), dtype=float, count=len(f))) * self.idf[keys]
        n = np.linalg.norm(v)
        return v / n if n else v

    def fit(self) -> None:
        if not self._seen:
            raise CorpusError("the topic model saw no documents")
        self.idf = np.log((1 + self._seen) / (1 + self._df)) + 1.0
        x = np.stack([self._vector(f) for f in self._sample])
        best = -np.inf
        for _ in range(_RESTARTS):  # k-means finds local optima: keep the tightest of a few seeded starts
            c = self._kmeans(x, min(self.k, len(x)))
            score = float(np.max(x @ c.T, axis=1).sum())
            if score > best + 1e-9:
                best, self.centroids = score, c
        self.names = self._names(np.argmax(x @ self.centroids.T, axis=1))

    def _names(self, assign: np.ndarray) -> list[str]:
        """topicJ:w1/w2/w3: the words among its documents' commonest that are most over-represented
        in the cluster (document frequency × log lift over the whole sample), so the statistics
        read as topics rather than as stop words."""
        per = [Counter() for _ in range(len(self.centroids))]
        for words, a in zip(self._words, assign):
            per[a].update(w for w, _ in words if len(w) > 2)
        every: Counter[str] = sum(per, Counter())
        docs = np.bincount(assign, minlength=len(per))
        names = []
        for j, total in enumerate(per):
            score = {w: n * np.log((n / docs[j]) / (every[w] / len(assign))) for w, n in total.items() if n >= 2}
            names.append(f"topic{j}:" + "/".join(sorted(score, key=lambda w: (-score[w], w))[:3]))
        return names

    def _kmeans(self, x: np.ndarray, k: int) -> np.ndarray:
        centroids = [x[int(self.rng.integers(len(x)))]]
        for _ in range(1, k):  # k-means++ on cosine distance
            d = np.clip(1.0 - np.max(x @ np.stack(centroids).T, axis=1), 0.0, None)
            p = d / d.sum() if d.sum() > 0 else np.full(len(x), 1 / len(x))
            centroids.append(x[int(self.rng.choice(len(x), p=p))])
        c = np.stack(centroids)
        for _ in range(_ITERATIONS):
            assign = np.argmax(x @ c.T, axis=1)
            new = np.stack([x[assign == j].sum(0) if np.any(assign == j) else c[j] for j in range(k)])
            new /= np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-12)
            if np.allclose(new, c):
                break
            c = new
        return c

    def predict(self, doc: Document) -> int:
        if self.centroids is None:
            self.fit()
        return int(np.argmax(self.centroids @ self._vector(_features(doc.tokens))))


class TopicLabeler(Labeler):
    needs_pass = True

    def __init__(self, k: int, seed: int) -> None:
        super().__init__()
        self.model = TopicModel(k, seed)
        self.names = [f"topic{j}" for j in range(k)]
        self._index = {n: j for j, n in enumerate(self.names)}
        self._last: tuple[int, int] | None = None

    def observe(self, i: int, doc: Document) -> None:
        self.model.observe(doc)

    def _fitted(self) -> None:
        if self.model.centroids is None:
            self.model.fit()
        self.names = self.model.names

    def counts(self) -> np.ndarray:
        """Documents per topic, estimated on the reservoir (every document when there are few)."""
        self._fitted()
        x = np.stack([self.model._vector(f) for f in self.model._sample])
        assign = np.argmax(x @ self.model.centroids.T, axis=1)
        scale = self.model._seen / len(x)
        return np.round(np.bincount(assign, minlength=len(self.names)) * scale).astype(np.int64)

    def label(self, i: int, doc: Document) -> int:
        if self._last is None or self._last[0] != i:
            self._fitted()
            self._last = (i, self.model.predict(doc))
        return self._last[1]


def make(cfg) -> Labeler:
    p = cfg.partition
    if p.label == "topic":
        return TopicLabeler(p.topics, cfg.seed)
    if p.label == "unit":
        return UnitLabeler()
    if p.label == "field":
        return FieldLabeler(p.label_field)
    return SourceLabeler(detect_format(cfg.data.corpus) if cfg.data.format == "auto" else cfg.data.format)


def check(cfg) -> None:
    p = cfg.partition
    if p.label not in KINDS:
        raise ConfigError(f"partition.label: {p.label!r} is not one of {sorted(KINDS)}")
    if p.label == "field":
        if not p.label_field:
            raise ConfigError("partition.label_field: name the JSON Lines field that holds the label "
                              "(partition.label = \"field\")")
        fmt = cfg.data.format
        if fmt == "auto":
            fmt = "jsonl" if any(s.lower() in (".jsonl", ".ndjson") for s in Path(cfg.data.corpus).suffixes) else "other"
        if fmt != "jsonl":
            raise ConfigError(f"partition.label = \"field\" needs a JSON Lines corpus; data.corpus is "
                              f"{cfg.data.corpus!r}")
