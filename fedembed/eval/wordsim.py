"""Word-vector quality the way the field reports it, with gensim's own evaluators.

WordSim353 and SimLex999 Spearman correlations and Google analogy accuracy, each with
its out-of-vocabulary rate, on the lists gensim ships under gensim/test/test_data.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from gensim.models import KeyedVectors
from gensim.test.utils import datapath

from fedembed.errors import CorpusError
from fedembed.export import quiet_gensim

PAIR_LISTS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
ANALOGIES = "questions-words.txt"


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(float(x)) else float(x)


def _analogy_total(path: str) -> int:
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip() and not line.startswith(":"))


def require_finite(kv: KeyedVectors, source: object) -> None:
    """Refuse vectors holding NaN or infinity, naming `source` and the first such row's word.

    Refused, not evaluated without those rows: a non-finite row means training diverged or the
    file is damaged, so the other rows are suspect too; figures computed without the bad rows
    would look like a result (with an OOV rate nobody asked for) and be compared with runs
    that had all their rows; and `fedembed serve` refuses the same file, so `evaluate`
    accepting it would make the two disagree."""
    vectors = kv.vectors
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1)) if vectors.size else []
    if len(bad):
        word = kv.index_to_key[int(bad[0])]
        raise CorpusError(f"{source}: the vector of {word!r} (row {int(bad[0]) + 1}) holds NaN or infinity "
                          f"({len(bad)} of its {len(vectors)} rows do); nothing evaluated")


def evaluate(kv: KeyedVectors, analogies: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with quiet_gensim():
        for name, fname in PAIR_LISTS.items():
            try:
                pearson, spearman, oov = kv.evaluate_word_pairs(datapath(fname))
            except ValueError:  # gensim raises when no pair is in the vocabulary
                out[name] = {"spearman": None, "pearson": None, "oov": 1.0}
                continue
            out[name] = {"spearman": _finite(spearman[0]), "pearson": _finite(pearson[0]), "oov": oov / 100.0}
        if analogies:
            path = datapath(ANALOGIES)
            try:
                score, sections = kv.evaluate_word_analogies(path)
                total = next(s for s in sections if s["section"] == "Total accuracy")
                seen = len(total["correct"]) + len(total["incorrect"])
            except (ValueError, StopIteration, ZeroDivisionError):
                score, seen = 0.0, 0
            out["analogy"] = {"accuracy": float(score) if seen else None,
                              "oov": 1.0 - seen / _analogy_total(path)}
    return out
