"""Words kept out of the vocabulary, and so out of every client's training: the out-of-vocabulary test.

`vocab.holdout` = h leaves out a share h of the words of the word-similarity lists gensim ships
(WordSim353, SimLex999), drawn from the scenario's seed. A word left out of the vocabulary is
dropped from the text as any unknown word is, so no model trained on the shards ever sees it;
a subword model still gives it a vector from its character n-grams, which the pairs containing
it then score (fedembed/eval/subword.py).
"""
from __future__ import annotations

import functools

import numpy as np

PAIR_LISTS = ("wordsim353.tsv", "simlex999.txt")


def read_pairs(fname: str) -> list[tuple[str, str, float]]:
    """(a, b, human score) of one of gensim's word-pair lists, lower-cased as the tokenizer does."""
    from gensim.test.utils import datapath

    out = []
    with open(datapath(fname), encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            a, b, score = line.rstrip("\n").split("\t")[:3]
            out.append((a.lower(), b.lower(), float(score)))
    return out


@functools.lru_cache(maxsize=4)
def held_out(share: float, seed: int) -> frozenset[str]:
    """The words left out for `vocab.holdout` = share under `seed` (none when share is 0)."""
    if share <= 0:
        return frozenset()
    words = sorted({w for fname in PAIR_LISTS for a, b, _ in read_pairs(fname) for w in (a, b)})
    rng = np.random.default_rng([seed, 0x0DD])
    k = int(round(share * len(words)))
    return frozenset(words[i] for i in rng.choice(len(words), size=k, replace=False))


def held_out_of(cfg) -> frozenset[str]:
    return held_out(cfg.vocab.holdout, cfg.seed)
