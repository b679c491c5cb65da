"""Where the global tables start: random (word2vec's init), a public warm start, or a vectors file.

User-level DP at small ε adds the same noise whatever the tables hold, so a model that already
knows English before round 1 spends its privacy budget on what the private data adds rather
than on relearning the language. Training on public text costs no privacy: it never sees a
client's data. `model.init` chooses:

  "random"  word2vec's initialisation (the family's `init_tables`): today's behaviour
  "public"  gensim Word2Vec trained centrally before round 1 on public text (fedembed's built-in
            corpus, or `model.init_corpus`), with the scenario's dim, window, negative, sample,
            ns_exponent and family, for `model.init_epochs` epochs at word2vec's default rates
            (0.025 → 0.0001): the federated `train.lr` is tuned for averaging, not for this.
            BOTH tables are copied: the input vectors (gensim's `wv`) and the output vectors
            (`syn1neg`). SGNS scores a pair by in·out, so a warm start with input vectors
            alone meets zero output vectors and its first gradients are zero too.
  a path    word2vec text or binary vectors (`KeyedVectors.load_word2vec_format`) fill the
            input rows; output rows stay zero (the format holds input vectors only).

Rows the public side lacks keep the random init (input uniform in ±0.5/D, output 0), so the
run's vocabulary is unchanged. The result (tables of the covered rows and the description for
the report) is cached in the run directory, so --resume and the report reuse it.
"""
from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fedembed.errors import ConfigError, CorpusError

RANDOM, PUBLIC = "random", "public"
CACHE = "init.npz"
PUBLIC_LR, PUBLIC_MIN_LR = 0.025, 0.0001          # word2vec's (and gensim's) defaults
MAX_WORDS = 10_000                                 # gensim drops a sentence's words past this
_HEADER_BYTES = 256


# ---- configuration ------------------------------------------------------------------------

def check(cfg) -> None:
    """Refuse a `model.init*` setting that cannot work, with one line naming the key or file."""
    m = cfg.model
    if m.init_epochs < 1:
        raise ConfigError(f"model.init_epochs must be >= 1, got {m.init_epochs}")
    if m.init not in (RANDOM, PUBLIC):
        path = Path(m.init)
        if not m.init or not path.is_file():
            raise ConfigError(f"model.init: {m.init!r} is neither \"random\", \"public\" nor an existing "
                              f"word2vec vectors file")
        dim = word2vec_dim(path)
        if dim != m.dim:
            raise ConfigError(f"model.init: {path} holds {dim}-dimensional vectors, model.dim is {m.dim}")
    if m.init_corpus and m.init != PUBLIC:
        raise ConfigError(f"model.init_corpus is only read with model.init = \"public\" (model.init is {m.init!r})")
    if m.init == PUBLIC:
        corpus = public_corpus(cfg)
        if corpus != "builtin" and not Path(corpus).exists():
            raise ConfigError(f"model.init_corpus: {corpus} does not exist")
        if _same_corpus(corpus, cfg.data.corpus):
            raise ConfigError(f"model.init = \"public\" would train on {corpus}, which is data.corpus (the private "
                              f"data): set model.init_corpus to public text, or data.corpus to the private corpus")


def public_corpus(cfg) -> str:
    """The warm start's text: `model.init_corpus`, or fedembed's built-in corpus when empty."""
    return cfg.model.init_corpus or "builtin"


def _same_corpus(a: str, b: str) -> bool:
    if "builtin" in (a, b):
        return a == b
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def word2vec_dim(path: Path) -> int:
    """The dimension in a word2vec file's 'count dim' header (text and binary share it)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_BYTES).split(b"\n", 1)[0].split()
    except OSError as exc:
        raise ConfigError(f"model.init: cannot read {path}: {exc.strerror}") from None
    if len(head) != 2 or not all(x.isdigit() for x in head) or int(head[1]) < 1:
        raise ConfigError(f"model.init: {path} is not a word2vec text or binary file "
                          f"(its first line is not 'count dim')")
    return int(head[1])


# ---- the initial tables -------------------------------------------------------------------

def initial_tables(cfg, words: list[str], family, seed: int,
                   cache_dir: Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The global tables before round 1 and a description of them for the report.

    `family`: the run's model family (fedembed.models.make(cfg)), whose `init_tables` gives the
    random rows. `cache_dir`: the run directory; a public or file start is saved there and
    reused when its inputs are unchanged (so --resume does not retrain it)."""
    tables = family.init_tables(len(words), seed)
    init = cfg.model.init
    if init == RANDOM:
        return tables, {"init": RANDOM, "rows_covered": 0, "rows_random": len(words)}
    if set(tables) != {"in_vectors", "out_vectors"}:
        raise ConfigError(f"model.init = {init!r} needs a word2vec family (in_vectors/out_vectors), "
                          f"model.family {cfg.model.family!r} has {sorted(tables)}")
    key = _cache_key(cfg, words, seed)
    cached = _load_cache(cache_dir, key) if cache_dir is not None else None
    if cached is None:
        rows, vin, vout, desc = (_public_rows(cfg, words, seed) if init == PUBLIC
                                 else _file_rows(cfg, words))
        if cache_dir is not None:
            _save_cache(Path(cache_dir), key, rows, vin, vout, desc)
    else:
        rows, vin, vout, desc = cached
    tables["in_vectors"][rows] = vin
    if vout is not None:
        tables["out_vectors"][rows] = vout
    return tables, desc


def _public_rows(cfg, words: list[str], seed: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    from gensim.models import Word2Vec

    m = cfg.model
    corpus = public_corpus(cfg)
    index = {w: i for i, w in enumerate(words)}
    counts = np.zeros(len(words), dtype=np.int64)
    total = 0
    for doc in _read(corpus):
        total += len(doc)
        for t in doc:
            i = index.get(t)
            if i is not None:
                counts[i] += 1
    covered = np.flatnonzero(counts)
    if not len(covered):
        raise CorpusError(f"model.init_corpus: {corpus} shares no word with the run's vocabulary")
    model = Word2Vec(vector_size=m.dim, window=m.window, negative=m.negative, sample=m.sample,
                     ns_exponent=m.ns_exponent, sg=1 if m.family == "sgns" else 0, hs=0,
                     alpha=PUBLIC_LR, min_alpha=PUBLIC_MIN_LR, min_count=1, seed=seed, workers=1)
    model.build_vocab_from_freq({words[i]: int(counts[i]) for i in covered})
    in_vocab = int(counts.sum())
    model.train(_Sentences(corpus, index), total_words=in_vocab, epochs=m.init_epochs)
    order = [model.wv.key_to_index[words[i]] for i in covered]
    desc = {"init": PUBLIC, "trained_on": "builtin (gensim's Lee news corpus and Wikipedia sample)"
            if corpus == "builtin" else corpus,
            "tokens": total, "tokens_in_vocabulary": in_vocab, "epochs": m.init_epochs,
            "lr": [PUBLIC_LR, PUBLIC_MIN_LR], "tables": ["in_vectors", "out_vectors"],
            "rows_covered": int(len(covered)), "rows_random": len(words) - int(len(covered)),
            "rows_covered_min_count_5": int((counts >= 5).sum())}
    return (covered, model.wv.vectors[order].astype(np.float32),
            model.syn1neg[order].astype(np.float32), desc)


def _file_rows(cfg, words: list[str]) -> tuple[np.ndarray, np.ndarray, None, dict[str, Any]]:
    from gensim.models import KeyedVectors

    from fedembed.export import quiet_gensim

    path = Path(cfg.model.init)
    dim = word2vec_dim(path)
    if dim != cfg.model.dim:
        raise ConfigError(f"model.init: {path} holds {dim}-dimensional vectors, model.dim is {cfg.model.dim}")
    kv = None
    with quiet_gensim():
        for binary in (False, True):            # told apart by content: text first
            try:
                kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
                break
            except (UnicodeDecodeError, ValueError, EOFError):
                continue
    if kv is None:
        raise ConfigError(f"model.init: {path} is neither word2vec text nor binary (gensim cannot read it)")
    # A word is the tokenizer's (NFKC, case-folded) form: match exactly first, then folded,
    # the file's first (usually most frequent) variant winning.
    folded: dict[str, int] = {}
    for j, key in enumerate(kv.index_to_key):
        folded.setdefault(unicodedata.normalize("NFKC", str(key)).casefold(), j)
    rows, src = [], []
    for i, w in enumerate(words):
        j = kv.key_to_index.get(w, folded.get(w))
        if j is not None:
            rows.append(i)
            src.append(j)
    desc = {"init": "file", "trained_on": str(path), "vectors_in_file": len(kv.index_to_key),
            "tables": ["in_vectors"], "out_vectors": "zero (a word2vec file holds input vectors only)",
            "rows_covered": len(rows), "rows_random": len(words) - len(rows)}
    return (np.asarray(rows, dtype=np.int64), kv.vectors[src].astype(np.float32).reshape(len(rows), dim),
            None, desc)


def _read(corpus: str) -> Iterator[list[str]]:
    from fedembed.data.corpus import read_corpus

    for doc in read_corpus(corpus):
        yield doc.tokens


class _Sentences:
    """Re-iterable in-vocabulary sentences of the public corpus, cut to gensim's 10,000 words."""

    def __init__(self, corpus: str, index: dict[str, int]) -> None:
        self.corpus, self.index = corpus, index

    def __iter__(self) -> Iterator[list[str]]:
        for toks in _read(self.corpus):
            toks = [t for t in toks if t in self.index]
            for lo in range(0, len(toks), MAX_WORDS):
                yield toks[lo:lo + MAX_WORDS]


# ---- cache --------------------------------------------------------------------------------

def _cache_key(cfg, words: list[str], seed: int) -> str:
    """Everything the initial tables depend on; a changed input means a fresh start."""
    m = cfg.model
    h = hashlib.sha256()
    source = public_corpus(cfg) if m.init == PUBLIC else m.init
    parts: list[Any] = [m.init, source, m.family, m.dim, m.window, m.negative, m.sample, m.ns_exponent,
                        m.init_epochs if m.init == PUBLIC else 0, seed, PUBLIC_LR, PUBLIC_MIN_LR]
    if source != "builtin":
        p = Path(source)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        parts += [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    h.update(json.dumps(parts, default=str).encode())
    for w in words:
        h.update(w.encode("utf-8") + b"\n")
    return h.hexdigest()


def _load_cache(cache_dir: Path, key: str):
    path = Path(cache_dir) / CACHE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            vout = z["out_vectors"] if bool(z["has_out"]) else None
            return z["rows"], z["in_vectors"], vout, json.loads(str(z["description"]))
    except (OSError, ValueError, KeyError):
        return None                               # unreadable: recompute and overwrite


def _save_cache(cache_dir: Path, key: str, rows: np.ndarray, vin: np.ndarray,
                vout: np.ndarray | None, desc: dict[str, Any]) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / (CACHE + ".tmp.npz")
    np.savez(tmp, key=np.array(key), rows=rows, in_vectors=vin,
             out_vectors=vout if vout is not None else np.zeros((0, vin.shape[1]), np.float32),
             has_out=np.array(vout is not None), description=np.array(json.dumps(desc)))
    os.replace(tmp, cache_dir / CACHE)


# ---- the report's baseline.public_only ---------------------------------------------------

def public_only_quality(words: list[str], tables: dict[str, np.ndarray], family,
                        analogies: bool = True) -> dict[str, Any]:
    """The warm start alone on the run's lists (WordSim353, SimLex999, analogies): what the
    report puts under `baseline.public_only`, so a run shows what the private data added.
    `tables`: `initial_tables`' result, before any round (rows it lacks are random, as in the run)."""
    from fedembed.eval.wordsim import evaluate
    from fedembed.export import keyed_vectors

    return evaluate(keyed_vectors(words, family.word_vectors(tables)), analogies=analogies)
