"""The subword family's evaluation, baseline and fastText export.

- Word similarity and analogies of the vocabulary's (composed) vectors, as for word2vec.
- The out-of-vocabulary test: the pairs of WordSim353/SimLex999 that contain a word held out of
  training entirely (`vocab.holdout`, fedembed/data/holdout.py), scored with the held-out word's
  n-gram vector (`quality.oov`).
- The baseline: gensim's `FastText` trained centrally on the same shards, vocabulary and
  hyperparameters (same n-gram range and bucket count), scored the same way.
- `embeddings.fasttext.bin`: Facebook's binary format, n-grams included, which gensim's
  `load_facebook_model` / `load_facebook_vectors` read back (vectors for unseen words too).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fedembed.data.holdout import PAIR_LISTS, held_out_of, read_pairs
from fedembed.eval import words as word_eval
from fedembed.run_view import FamilyReport, RunView

OOV_FIGURES = (("oov.wordsim353", "spearman"), ("oov.simlex999", "spearman"))


def oov_quality(vector_of: Callable[[str], np.ndarray], held: frozenset[str]) -> dict[str, Any]:
    """Spearman correlation over the pairs that hold at least one held-out word (each word's
    vector from `vector_of`), per list; `pairs` is how many were scored."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {"held_out_words": len(held)}
    for fname in PAIR_LISTS:
        name = fname.split(".")[0]
        pairs = [(a, b, s) for a, b, s in read_pairs(fname) if a in held or b in held]
        sims, gold = [], []
        for a, b, s in pairs:
            va, vb = vector_of(a).astype(np.float64), vector_of(b).astype(np.float64)
            na, nb = np.linalg.norm(va), np.linalg.norm(vb)
            sims.append(float(va @ vb / (na * nb)) if na > 0 and nb > 0 else 0.0)
            gold.append(s)
        rho = spearmanr(gold, sims).statistic if len(pairs) > 2 else float("nan")
        out[name] = {"spearman": None if math.isnan(rho) else float(rho), "pairs": len(pairs)}
    return out


def vector_lookup(family, run: RunView, vectors: np.ndarray) -> Callable[[str], np.ndarray]:
    """A word's vector: its composed row when in the vocabulary, else its n-grams' mean."""
    index = run.rows.index
    return lambda w: vectors[index[w]] if w in index else family.unseen(run.tables, w)


def evaluate(family, run: RunView, quick: bool = False) -> dict[str, Any]:
    vectors = family.word_vectors(run.tables, run.rows.words)
    quality = word_eval.evaluate(run, vectors, quick)
    held = held_out_of(run.cfg)
    if held:
        quality["oov"] = oov_quality(vector_lookup(family, run, vectors), held)
    return quality


def _oov(q: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (q.get("oov") or {}).items() if isinstance(v, dict)}


def report(family, run: RunView) -> FamilyReport:
    vectors = family.word_vectors(run.tables, run.rows.words)
    quality = evaluate(family, run)
    out = word_eval.report(run, vectors, baseline=lambda: gensim_fasttext(run), quality=quality)
    out.headline["federated"].update(word_eval.headline({"oov." + k: v for k, v in _oov(quality).items()},
                                                        OOV_FIGURES))
    held = held_out_of(run.cfg)
    if "gensim" in out.baselines:
        base = out.baselines["gensim"]
        base["model"] = "gensim FastText"
        if held:
            base["oov"] = oov_quality(out.reference.get_vector, held)
        flat_q = {"oov." + k: v for k, v in _oov(quality).items()}
        flat_b = {"oov." + k: v for k, v in _oov(base).items()}
        out.ratios.update(word_eval.ratios(flat_q, flat_b, OOV_FIGURES))
        out.headline["gensim FastText (centralized)"] = {**out.headline.pop("gensim (centralized)"),
                                                         **word_eval.headline(flat_b, OOV_FIGURES)}
    out.files += export_facebook(family, run, run.run_dir / "embeddings.fasttext.bin")
    return out


def gensim_fasttext(run: RunView):
    """gensim's FastText trained centrally on the run's shards, with the run's hyperparameters."""
    from gensim.models import FastText

    from fedembed.data.shards import load_shard
    from fedembed.eval.baseline import ShardSentences, baseline_epochs

    cfg, m, t, f = run.cfg, run.cfg.model, run.cfg.train, run.cfg.fasttext
    model = FastText(vector_size=m.dim, window=m.window, negative=m.negative, sample=m.sample,
                     ns_exponent=m.ns_exponent, sg=1, hs=0, alpha=t.lr, min_alpha=t.min_lr, min_count=1,
                     min_n=f.min_n, max_n=f.max_n, bucket=f.buckets, seed=cfg.seed, workers=1)
    model.build_vocab_from_freq(dict(zip(run.rows.words, run.rows.counts.tolist())))
    total = int(sum(len(load_shard(run.shard_dir, k)[0]) for k in run.clients))
    model.train(ShardSentences(run.shard_dir, run.clients, run.rows.words), total_words=total,
                epochs=baseline_epochs(cfg, len(run.clients)))
    return model.wv


def as_gensim(family, run: RunView):
    """A gensim FastText model holding the run's tables (word rows, n-gram buckets, output rows)."""
    from gensim.models import FastText

    cfg, m, f = run.cfg, run.cfg.model, run.cfg.fasttext
    model = FastText(vector_size=m.dim, window=m.window, negative=m.negative, sample=m.sample,
                     ns_exponent=m.ns_exponent, sg=1, hs=0, alpha=cfg.train.lr, min_alpha=cfg.train.min_lr,
                     min_count=1, min_n=f.min_n, max_n=f.max_n, bucket=f.buckets, seed=cfg.seed, workers=1,
                     epochs=max(1, cfg.federation.rounds * cfg.train.local_epochs))
    model.build_vocab_from_freq(dict(zip(run.rows.words, run.rows.counts.tolist())))
    order = np.array([run.rows.index[w] for w in model.wv.index_to_key], dtype=np.int64)   # gensim row → ours
    model.wv.vectors_vocab[:] = run.tables["in_vectors"][order]
    model.wv.vectors_ngrams[:] = run.tables["ngram_buckets"]
    model.syn1neg[:] = run.tables["out_vectors"][order]
    model.wv.adjust_vectors()
    return model


def export_facebook(family, run: RunView, path: Path) -> list[Path]:
    """Facebook's fastText .bin (gensim's `save_facebook_model`), written whole or not at all."""
    from gensim.models.fasttext import save_facebook_model

    from fedembed.data.lines import one_line
    from fedembed.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"cannot export to {path}: it is a directory (give a file path)")
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_facebook_model(as_gensim(family, run), str(tmp))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror or one_line(exc)}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return [path]
