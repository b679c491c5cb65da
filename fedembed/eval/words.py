"""The word families' evaluation and report: word2vec files, word similarity and analogies, and
gensim trained centrally on the same shards (fedembed/eval/baseline.py) as the baseline."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from fedembed.eval.neighbours import neighbour_overlap
from fedembed.eval.wordsim import evaluate as wordsim, require_finite
from fedembed.export import export, keyed_vectors
from fedembed.run_view import FamilyReport, RunView

HEADLINE = (("wordsim353", "spearman"), ("simlex999", "spearman"), ("analogy", "accuracy"))


def ratios(quality: dict[str, Any], baseline: dict[str, Any],
           figures: tuple[tuple[str, str], ...] = HEADLINE) -> dict[str, float | None]:
    """Federated ÷ centralized for each headline figure (None where undefined)."""
    out: dict[str, float | None] = {}
    for name, key in figures:
        f, b = quality.get(name, {}).get(key), baseline.get(name, {}).get(key)
        out[f"{name}.{key}"] = f / b if f is not None and b not in (None, 0) else None
    return out


def headline(quality: dict[str, Any], figures: tuple[tuple[str, str], ...] = HEADLINE) -> dict[str, Any]:
    return {f"{name}.{key}": quality.get(name, {}).get(key) for name, key in figures}


def evaluate(run: RunView, vectors: np.ndarray, quick: bool = False) -> dict[str, Any]:
    """WordSim353, SimLex999 (and, unless `quick`, analogies) of the rows' vectors; vectors with
    NaN or infinity are refused naming `run.source`."""
    kv = keyed_vectors(run.rows.words, vectors)
    if run.source is not None:
        require_finite(kv, run.source)
    return wordsim(kv, analogies=not quick)


def round_figures(run: RunView, vectors: np.ndarray) -> dict[str, Any]:
    """{"wordsim353": spearman, "simlex999": spearman}: metrics.jsonl's per-round quality."""
    result = wordsim(keyed_vectors(run.rows.words, vectors), analogies=False)
    return {name: result[name]["spearman"] for name in ("wordsim353", "simlex999")}


def report(run: RunView, vectors: np.ndarray, baseline: Callable[[], Any] | None = None,
           quality: dict[str, Any] | None = None) -> FamilyReport:
    """embeddings.txt/.bin, quality, and (eval.baseline) gensim's figures next to them.
    `baseline`: the centralized model's KeyedVectors (default: gensim Word2Vec on the shards);
    `quality`: figures already computed (default: word similarity and analogies)."""
    words = run.rows.words
    files = [*export(words, vectors, run.run_dir / "embeddings.txt", "word2vec-text"),
             *export(words, vectors, run.run_dir / "embeddings.bin", "word2vec-binary")]
    quality = quality if quality is not None else wordsim(keyed_vectors(words, vectors))
    out = FamilyReport(quality, files=files, headline={"federated": headline(quality)})
    if run.cfg.eval.baseline:
        t0 = time.perf_counter()
        kv = (baseline or (lambda: gensim_word2vec(run)))()
        base = wordsim(kv)
        base["seconds"] = time.perf_counter() - t0
        out.baselines = {"gensim": base}
        out.ratios = ratios(quality, base)
        out.reference = kv
        # how much of the private data's structure the model learned (the 10 nearest neighbours of
        # the 1,000 most frequent words, against gensim on the same data): informative where the
        # word lists are noisy (fedembed/eval/neighbours.py)
        quality["neighbour_overlap"] = neighbour_overlap(words, vectors, kv, run.rows.counts)
        out.headline["gensim (centralized)"] = headline(base)
    return out


def gensim_word2vec(run: RunView):
    from fedembed.eval.baseline import train_gensim

    return train_gensim(run.cfg, run.rows, run.shard_dir, run.clients)
