"""Exact cosine nearest neighbours over a vocabulary: the serving hot path.

Rows are unit-normalised once into one float32 matrix, stored transposed ([dim, V],
C-contiguous: `q @ unit_t` streams it once and measured 1.5x faster than `unit @ q` with
OpenBLAS here), so a query's cosine scores are one BLAS matrix-vector product (a batch of
queries one matrix product), and the top k come from `top_k` (block maxima, then a
partition of the few candidate blocks), sorting only those k.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


_BLOCK = 256


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, largest first; exact (ties broken arbitrarily).

    The k largest values lie in the k blocks of _BLOCK with the largest maxima (each block
    holding one of them has a maximum >= the k-th largest, and at most k blocks can), so
    only those k * _BLOCK candidates are partitioned: one vectorised max over the scores
    instead of an introselect over all of them (0.07 vs 0.75 ms for k=10 over 100,000 here).
    """
    n = len(scores)
    if k >= n:
        cand = np.arange(n)
    elif 4 * k * _BLOCK <= n:
        m = n - n % _BLOCK
        maxima = scores[:m].reshape(-1, _BLOCK).max(axis=1)
        blocks = np.argpartition(maxima, len(maxima) - k)[len(maxima) - k:]
        cand = (blocks[:, None] * _BLOCK + np.arange(_BLOCK)).ravel()
        if m < n:
            cand = np.concatenate([cand, np.arange(m, n)])
        cand = cand[np.argpartition(scores[cand], len(cand) - k)[len(cand) - k:]]
    else:
        cand = np.argpartition(scores, n - k)[n - k:]
    return cand[np.argsort(-scores[cand], kind="stable")]


class UnknownWord(KeyError):
    """A word outside the vocabulary (the server answers NOT_FOUND)."""

    def __init__(self, word: str) -> None:
        super().__init__(word)
        self.word = word

    def __str__(self) -> str:
        return f"word not in vocabulary: {self.word!r}"


class BadVector(ValueError):
    """A query vector that cannot be scored (wrong size, not finite, all zero)."""


class ExactIndex:
    """Words, their raw vectors and unit-normalised copies; exact top-k by cosine."""

    kind = "exact"

    def __init__(self, words: Sequence[str], vectors: np.ndarray,
                 oov: Callable[[str], np.ndarray] | None = None) -> None:
        """`oov` maps an unseen word to a vector (a subword family's n-gram sum); without it an
        unseen word is UnknownWord (NOT_FOUND)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"expected {len(words)} vectors as a 2-D array, got shape {vectors.shape}")
        if vectors.shape[0] == 0:
            raise ValueError("no vectors to serve (empty vocabulary)")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinity")
        self.words, self.oov = list(words), oov
        self.ids = {w: i for i, w in enumerate(self.words)}
        if len(self.ids) != len(self.words):
            raise ValueError("duplicate words in the vocabulary")
        self.vectors = np.ascontiguousarray(vectors)
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        # An all-zero row (a word no client ever trained) stays zero: cosine 0 with everything.
        self.unit_t = np.ascontiguousarray((self.vectors / np.where(norms > 0, norms, 1.0)).T, dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        try:
            return self.ids[word]
        except KeyError:
            raise UnknownWord(word) from None

    def _resolve(self, word: str) -> tuple[int | None, np.ndarray]:
        """(row id, vector) of a vocabulary word; (None, its subword vector) for an unseen word
        when the model has a subword table (`oov`); else UnknownWord."""
        i = self.ids.get(word)
        if i is not None:
            return i, self.vectors[i]
        if self.oov is None:
            raise UnknownWord(word)
        v = np.asarray(self.oov(word), dtype=np.float32).reshape(-1)
        if v.shape != (self.dim,) or not np.isfinite(v).all():
            raise RuntimeError(f"the subword model gave {word!r} a vector of shape {v.shape} or not finite")
        return None, v

    def _unit(self, word: str) -> tuple[int | None, np.ndarray]:
        i, v = self._resolve(word)
        if i is not None:
            return i, self.unit_row(i)
        norm = float(np.linalg.norm(v))
        return None, v / norm if norm > 0 else v

    def vector(self, word: str) -> np.ndarray:
        return self._resolve(word)[1]

    def unit_row(self, i: int) -> np.ndarray:
        return self.unit_t[:, i]

    def similarity(self, a: str, b: str) -> float:
        return float(self._unit(a)[1] @ self._unit(b)[1])

    def unit_query(self, vector: Sequence[float] | np.ndarray) -> np.ndarray:
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise BadVector(f"query vector has {q.shape[0]} values; this model's dimension is {self.dim}")
        if not np.isfinite(q).all():
            raise BadVector("query vector contains NaN or infinity")
        norm = float(np.linalg.norm(q))
        if norm == 0.0:
            raise BadVector("query vector is all zeros (cosine is undefined)")
        return q / norm

    def search(self, queries: np.ndarray, k: int,
               exclude: Sequence[Sequence[int]] | None = None) -> list[list[tuple[int, float]]]:
        """Top-k (row id, cosine) for each unit query row, best first, skipping `exclude[i]`."""
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        # A matrix product pays off from about 8 queries; below that OpenBLAS's sgemm was slower
        # than separate matrix-vector products (it packs the whole [dim, V] matrix per call).
        scores = queries @ self.unit_t if len(queries) >= 8 else [q @ self.unit_t for q in queries]
        out = []
        for i, row in enumerate(scores):
            skip = list(exclude[i]) if exclude else []
            if skip:
                row[skip] = -np.inf
            kk = min(k, len(row) - len(set(skip)))
            if kk <= 0:
                out.append([])
                continue
            top = top_k(row, kk)
            out.append([(int(j), float(row[j])) for j in top])
        return out

    def neighbors(self, word: str, k: int) -> list[tuple[str, float]]:
        """The k words closest to `word`, which itself is left out."""
        i, u = self._unit(word)
        if not u.any():
            raise BadVector(f"{word!r} has an all-zero vector (never trained): it has no nearest neighbours")
        return self._named(self.search(u, k, [[i]] if i is not None else None)[0])

    def neighbors_of_vector(self, vector: Sequence[float] | np.ndarray, k: int) -> list[tuple[str, float]]:
        return self._named(self.search(self.unit_query(vector), k)[0])

    def analogy(self, a: str, b: str, c: str, k: int) -> list[tuple[str, float]]:
        """a : b :: c : ?  by 3CosAdd over unit vectors (as gensim's most_similar([b, c], [a]))."""
        (ia, ua), (ib, ub), (ic, uc) = self._unit(a), self._unit(b), self._unit(c)
        target = ub - ua + uc
        norm = float(np.linalg.norm(target))
        if norm == 0.0:
            raise BadVector(f"analogy {a}:{b}::{c}:? has a zero target vector")
        skip = [i for i in (ia, ib, ic) if i is not None]
        return self._named(self.search(target / norm, k, [skip])[0])

    def _named(self, hits: list[tuple[int, float]]) -> list[tuple[str, float]]:
        return [(self.words[j], s) for j, s in hits]
