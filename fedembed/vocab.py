"""The public vocabulary every client agrees on: rows of the embedding tables.

`public` mode builds it from a public source (the built-in reference corpus or a
word-list file), never from the clients' private text. The counts drive frequent-word
subsampling and the unigram^0.75 negative-sampling table, both of which must be the
same on every client.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from fedembed.errors import ConfigError, CorpusError


@dataclass
class Vocabulary:
    words: list[str]
    counts: np.ndarray  # int64 [V]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if len(self.words) != len(self.counts):
            raise ValueError("words and counts differ in length")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise CorpusError("vocabulary has duplicate words")

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Token ids of in-vocabulary tokens (out-of-vocabulary ones are dropped, as word2vec does)."""
        idx = self.index
        return np.fromiter((idx[t] for t in tokens if t in idx), dtype=np.int32)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for w, c in zip(self.words, self.counts.tolist()):
            h.update(f"{w}\t{c}\n".encode())
        return h.hexdigest()[:16]

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for w, c in zip(self.words, self.counts.tolist()):
                fh.write(f"{w}\t{c}\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Vocabulary":
        words, counts = read_word_list(path)
        try:
            return cls(words, counts)
        except CorpusError as exc:
            raise CorpusError(f"{path}: {exc}") from None


def from_counts(counts: Counter[str], min_count: int = 1, max_size: int = 0) -> Vocabulary:
    """Most frequent first (ties by word, so the row order is reproducible)."""
    if min_count < 1:
        raise ConfigError(f"vocab.min_count must be >= 1, got {min_count}")
    if max_size < 0:
        raise ConfigError(f"vocab.max_size must be >= 0 (0 = no limit), got {max_size}")
    items = sorted(((w, c) for w, c in counts.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
    if max_size:
        items = items[:max_size]
    if not items:
        raise CorpusError(f"vocabulary is empty: no word occurs at least min_count={min_count} times")
    return Vocabulary([w for w, _ in items], np.array([c for _, c in items], dtype=np.int64))


MAX_COUNT = 2 ** 40  # ~1.1e12: above any real word count, and V of them still sum within int64


def read_word_list(path: Path) -> tuple[list[str], list[int]]:
    """A word list: `word` or `word<whitespace>count` per line. Without counts, Zipf's law by rank.

    Lines are read bounded (fedembed/data/lines.py), so a file without line breaks is refused
    with its line, not held whole."""
    from fedembed.data.lines import raw_lines

    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"word-list file does not exist: {path}")
    words: list[str] = []
    counts: list[int | None] = []
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise CorpusError(f"cannot read word-list file {path}: {exc.strerror or exc}") from exc
    with fh:
        for lineno, raw in raw_lines(fh, path):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason})") from exc
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) > 2:
                raise CorpusError(f"{path}:{lineno}: expected 'word' or 'word count', got {_clip(line.strip())!r}")
            count = None
            if len(parts) == 2:
                try:
                    count = int(parts[1])
                except ValueError as exc:
                    raise CorpusError(f"{path}:{lineno}: count {_clip(parts[1])!r} is not an integer") from exc
                if count < 1:
                    raise CorpusError(f"{path}:{lineno}: count must be positive, got {count}")
                if count > MAX_COUNT:
                    raise CorpusError(f"{path}:{lineno}: count {_clip(parts[1])} is above {MAX_COUNT} (2^40), "
                                      f"more than any corpus holds")
            words.append(parts[0])
            counts.append(count)
    if not words:
        raise CorpusError(f"word-list file {path} has no words")
    if any(c is None for c in counts):
        if any(c is not None for c in counts):
            raise CorpusError(f"{path}: either every line has a count or none does")
        top = 10 * len(words)
        counts = [max(1, top // (rank + 1)) for rank in range(len(words))]
    return words, [int(c) for c in counts]  # type: ignore[arg-type]


def _clip(text: str, n: int = 60) -> str:
    """A bad field quoted in an error, cut short (a line may be megabytes long)."""
    return text if len(text) <= n else text[:n] + "…"


def from_word_list(path: Path, min_count: int = 1, max_size: int = 0) -> Vocabulary:
    from fedembed.data.tokenize import tokenize

    words, counts = read_word_list(path)
    merged: Counter[str] = Counter()
    for w, c in zip(words, counts):
        toks = tokenize(w)
        if len(toks) == 1:  # the list must use the same notion of a word as the tokenizer
            merged[toks[0]] += c
    return from_counts(merged, min_count, max_size)


def from_corpus(path: str, fmt: str = "auto", min_count: int = 5, max_size: int = 0) -> Vocabulary:
    from fedembed.data.corpus import read_corpus

    counts: Counter[str] = Counter()
    for doc in read_corpus(path, fmt):
        counts.update(doc.tokens)
    return from_counts(counts, min_count, max_size)


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's frequent-word subsampling (gensim's formula), as a keep probability per row."""
    if sample <= 0:
        return np.ones(len(counts), dtype=np.float32)
    total = float(counts.sum())
    threshold = sample * total
    c = np.maximum(counts.astype(np.float64), 1.0)
    p = (np.sqrt(c / threshold) + 1.0) * (threshold / c)
    return np.minimum(p, 1.0).astype(np.float32)


def negative_distribution(counts: np.ndarray, exponent: float) -> np.ndarray:
    """word2vec's negative-sampling distribution: unigram counts to the power `exponent`."""
    w = np.maximum(counts.astype(np.float64), 1.0) ** exponent
    return w / w.sum()


_ALIAS_CACHE: dict[tuple[bytes, str, float], tuple[np.ndarray, np.ndarray]] = {}
_ALIAS_CACHE_SIZE = 4


def alias_table(counts: np.ndarray, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table of the negative distribution: (acceptance prob float32, alias int64).

    Cached per process by the counts' digest: the public counts are the same for every client
    and round, and building the table (a Python loop over the vocabulary, ~10 ms at 17k words)
    was a third of a small client's round. Callers get their own copies."""
    counts = np.ascontiguousarray(counts)
    key = (hashlib.blake2b(counts.tobytes(), digest_size=16).digest(), counts.dtype.str, float(exponent))
    if key not in _ALIAS_CACHE:
        if len(_ALIAS_CACHE) >= _ALIAS_CACHE_SIZE:
            _ALIAS_CACHE.pop(next(iter(_ALIAS_CACHE)))
        _ALIAS_CACHE[key] = _build_alias_table(counts, exponent)
    prob, alias = _ALIAS_CACHE[key]
    return prob.copy(), alias.copy()


def _build_alias_table(counts: np.ndarray, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    p = negative_distribution(counts, exponent)
    n = len(p)
    scaled = p * n
    prob = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, l = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], l
        scaled[l] -= 1.0 - scaled[s]
        (small if scaled[l] < 1.0 else large).append(l)
    return prob.astype(np.float32), alias
