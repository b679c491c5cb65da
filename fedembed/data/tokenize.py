"""Unicode-aware word tokenizer shared by clients, the vocabulary and the baseline.

One tokenizer for every stage, so that a word is the same row everywhere: NFKC
normalisation, case folding, and runs of letters (any script) with inner apostrophes.
Digits and punctuation are dropped, as the word-similarity lists hold no numbers.
"""
from __future__ import annotations

import re
import sys
import unicodedata


def _mark_class() -> str:
    """A character class of the combining marks (Mn, Mc, Me), which Python's `\\w` leaves out:
    without them Devanagari, Arabic with vowel points, etc. would be cut inside words."""
    ranges: list[list[int]] = []
    for c in range(sys.maxunicode + 1):
        if unicodedata.category(chr(c)) in ("Mn", "Mc", "Me"):
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    return "[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]"


# Letters, then combining marks and letters; the (non-ASCII) lookahead keeps plain text fast.
_LETTERS = rf"[^\W\d_]+(?:(?=[^\x00-\x7f]){_mark_class()}+[^\W\d_]*)*"
_WORD = re.compile(rf"{_LETTERS}(?:['\u2019]{_LETTERS})*", re.UNICODE)


def normalize(text: str) -> str:
    """What every token goes through before it is split: NFKC, case folding, the typographic
    apostrophe made plain. Served queries are looked up in this form too (fedembed/serving), so
    `King` or a decomposed `fédération` finds the row training gave the word."""
    return unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")


def tokenize(text: str, min_len: int = 1, max_len: int = 40) -> list[str]:
    """Split `text` into lower-cased word tokens."""
    text = normalize(text)
    return [t for t in _WORD.findall(text) if min_len <= len(t) <= max_len]


def wiki_tokenizer(text: str, token_min_len: int, token_max_len: int, lower: bool) -> list[str]:
    """`tokenize` in the signature gensim's `WikiCorpus(tokenizer_func=...)` expects."""
    return tokenize(text, token_min_len, token_max_len)
