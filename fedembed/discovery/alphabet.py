"""The public alphabet the trie grows over, and words as rows of symbol codes.

Why an alphabet: the vote vector's domain must be fixed and public before anyone votes
(secure aggregation sums vectors of one agreed length), so a level's candidates are
"prefix + every string of c symbols": a word with a character outside the alphabet, or
longer than `max_length`, cannot be voted for and is never discovered. The default is what
fedembed's tokenizer makes of English (lower-case letters and the inner apostrophe).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fedembed.errors import ConfigError

ENGLISH = "abcdefghijklmnopqrstuvwxyz'"


class Alphabet:
    def __init__(self, symbols: str = ENGLISH, max_length: int = 15) -> None:
        if not symbols or len(set(symbols)) != len(symbols):
            raise ConfigError(f"vocab.discovery.alphabet must be non-empty with no repeated symbol, got {symbols!r}")
        if max_length < 1:
            raise ConfigError(f"vocab.discovery.max_length must be >= 1, got {max_length}")
        self.symbols, self.max_length = symbols, max_length
        self.code = {s: i for i, s in enumerate(symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def votable(self, word: str) -> bool:
        """Whether `word` can be discovered: 1..max_length symbols of the alphabet."""
        return 0 < len(word) <= self.max_length and all(ch in self.code for ch in word)

    def encode(self, words: Iterable[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The votable words (others dropped), their codes [n, max_length] (−1 past the end) and lengths."""
        kept = [w for w in words if self.votable(w)]
        codes = np.full((len(kept), self.max_length), -1, dtype=np.int64)
        for i, w in enumerate(kept):
            codes[i, :len(w)] = [self.code[ch] for ch in w]
        return kept, codes, np.array([len(w) for w in kept], dtype=np.int64)

    def decode(self, codes: Iterable[int]) -> str:
        return "".join(self.symbols[int(c)] for c in codes)
