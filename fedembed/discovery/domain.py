"""A discovery round's candidates: a public, dense vector domain that votes index into.

`TrieLevel`: the surviving prefixes (all of one depth d) times every way a word can go on:
the next c symbols with the word going on past them ("continue"), or the word ending after
j = 1..c more symbols ("end"). Per prefix that is a block of K^c + K + K² + … + K^c slots
(K symbols), laid out as [continue | end with 1 symbol | end with 2 | …]; slot values are the
symbols read as a base-K number. A word names one slot (or none, when its prefix did not
survive or it ended at an earlier level), so a client's votes never depend on anyone else's.

`WordList`: one slot per candidate word (the refinement rounds).

Both are rebuilt by every client from the round's message (prefixes or words, depth, chunk),
so the server and the clients index the vector alike.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fedembed.discovery.alphabet import Alphabet


@dataclass
class TrieLevel:
    alphabet: Alphabet
    prefixes: list[str]      # the surviving prefixes, all `depth` symbols long ([""] at the root)
    depth: int
    chunk: int               # symbols a candidate adds
    _row: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._row = {p: i for i, p in enumerate(self.prefixes)}
        k, c = len(self.alphabet), self.chunk
        self.continues = k ** c                                  # slots of words going on
        self.end_offsets = np.cumsum([0] + [k ** j for j in range(1, c + 1)])   # ends with j symbols at [j-1]
        self.block = self.continues + int(self.end_offsets[-1])

    @property
    def size(self) -> int:
        return len(self.prefixes) * self.block

    def _value(self, symbols: str) -> int:
        v = 0
        for ch in symbols:
            v = v * len(self.alphabet) + self.alphabet.code[ch]
        return v

    def index_of(self, words: Sequence[str]) -> np.ndarray:
        """The slot of every word (−1: not a candidate here). Words must be votable (Alphabet.votable)."""
        out = np.full(len(words), -1, dtype=np.int64)
        d, c = self.depth, self.chunk
        for i, w in enumerate(words):
            if len(w) <= d:
                continue
            row = self._row.get(w[:d])
            if row is None:
                continue
            rest = w[d:d + c]
            if len(w) > d + c:
                out[i] = row * self.block + self._value(rest)
            else:
                out[i] = row * self.block + self.continues + int(self.end_offsets[len(rest) - 1]) + self._value(rest)
        return out

    def is_end(self, index: np.ndarray) -> np.ndarray:
        return np.asarray(index) % self.block >= self.continues

    def label(self, index: int) -> tuple[str, bool]:
        """(prefix + the slot's symbols, whether the word ends there)."""
        row, slot = divmod(int(index), self.block)
        if slot < self.continues:
            length, value, ends = self.chunk, slot, False
        else:
            slot -= self.continues
            length = int(np.searchsorted(self.end_offsets, slot, side="right"))   # 1..c
            value, ends = slot - int(self.end_offsets[length - 1]), True
        k, symbols = len(self.alphabet), []
        for _ in range(length):
            value, s = divmod(value, k)
            symbols.append(self.alphabet.symbols[s])
        return self.prefixes[row] + "".join(reversed(symbols)), ends


@dataclass
class WordList:
    words: list[str]
    _row: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._row = {w: i for i, w in enumerate(self.words)}

    @property
    def size(self) -> int:
        return len(self.words)

    def index_of(self, words: Sequence[str]) -> np.ndarray:
        return np.fromiter((self._row.get(w, -1) for w in words), dtype=np.int64, count=len(words))

    def is_end(self, index: np.ndarray) -> np.ndarray:
        return np.ones(np.shape(index), dtype=bool)

    def label(self, index: int) -> tuple[str, bool]:
        return self.words[int(index)], True


Domain = TrieLevel | WordList
