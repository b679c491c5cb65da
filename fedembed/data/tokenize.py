"""Unicode-aware word tokenizer shared by clients, the vocabulary and the baseline.

One tokenizer for every stage, so that a word is the same row everywhere: NFKC
normalisation, case folding, and runs of letters (any script) with inner apostrophes.
Digits and punctuation are dropped, as the word-similarity lists hold no numbers.
"""
from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*", re.UNICODE)


def tokenize(text: str, min_len: int = 1, max_len: int = 40) -> list[str]:
    """Split `text` into lower-cased word tokens."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    return [t for t in _WORD.findall(text) if min_len <= len(t) <= max_len]


def wiki_tokenizer(text: str, token_min_len: int, token_max_len: int, lower: bool) -> list[str]:
    """`tokenize` in the signature gensim's `WikiCorpus(tokenizer_func=...)` expects."""
    return tokenize(text, token_min_len, token_max_len)
