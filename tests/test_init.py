"""Where the global tables start (fedembed/models/init.py): random, a public warm start, a vectors file."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors, Word2Vec

from fedembed import config, models
from fedembed.errors import ConfigError
from fedembed.models import init as init_mod
from fedembed.models.init import check, initial_tables, public_only_quality

# A small public text: three topics, each with its own words, so co-occurrence has structure.
_TOPICS = [["cat", "dog", "pet", "fur", "paw", "tail"], ["car", "road", "wheel", "engine", "fuel", "drive"],
           ["bread", "cheese", "butter", "milk", "flour", "bake"]]
_UNSEEN = ["zork", "quux"]                                   # in the run's vocabulary, never in the public text
DIM = 16


@pytest.fixture(scope="module")
def public_text(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    lines = []
    for _ in range(600):
        topic = _TOPICS[rng.integers(3)]
        lines.append(" ".join(rng.choice(topic, size=12)))
    p = tmp_path_factory.mktemp("public") / "public.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def _words() -> list[str]:
    return [w for t in _TOPICS for w in t] + _UNSEEN


def _cfg(**model) -> config.Config:
    values = {"model.dim": DIM, "model.window": 3, "model.negative": 3, "data.corpus": "private.txt"}
    values.update({f"model.{k}": v for k, v in model.items()})
    return config.load(None, values)


def _public_cfg(public_text: Path, **model) -> config.Config:
    return _cfg(init="public", init_corpus=str(public_text), init_epochs=model.pop("init_epochs", 3), **model)


def test_random_is_the_family_init_unchanged():
    cfg = _cfg()
    family = models.make(cfg)
    tables, desc = initial_tables(cfg, _words(), family, seed=3)
    ref = family.init_tables(len(_words()), 3)
    assert desc["init"] == "random" and desc["rows_random"] == len(_words())
    for name in ref:
        assert np.array_equal(tables[name], ref[name])


def test_public_covers_seen_rows_with_both_tables_and_leaves_the_rest_random(public_text):
    cfg = _public_cfg(public_text)
    family = models.make(cfg)
    words = _words()
    tables, desc = initial_tables(cfg, words, family, seed=0)
    rand = family.init_tables(len(words), 0)
    seen = [i for i, w in enumerate(words) if w not in _UNSEEN]
    unseen = [words.index(w) for w in _UNSEEN]
    assert desc["init"] == "public" and desc["rows_covered"] == len(seen) and desc["rows_random"] == len(unseen)
    assert desc["trained_on"] == str(public_text) and desc["tokens"] == 600 * 12 and desc["epochs"] == 3
    # unseen rows: exactly the random init (input uniform, output zero)
    assert np.array_equal(tables["in_vectors"][unseen], rand["in_vectors"][unseen])
    assert not tables["out_vectors"][unseen].any()
    # seen rows: gensim's trained vectors, input AND output, each on its own word's row
    m = cfg.model
    ref = Word2Vec(vector_size=DIM, window=m.window, negative=m.negative, sample=m.sample, ns_exponent=m.ns_exponent,
                   sg=1, hs=0, alpha=0.025, min_alpha=0.0001, min_count=1, seed=0, workers=1)
    sentences = [line.split() for line in public_text.read_text().splitlines()]
    counts = {words[i]: 0 for i in seen}          # in the run's row order: gensim's sort is not stable
    for s in sentences:
        for w in s:
            counts[w] += 1
    ref.build_vocab_from_freq(counts)
    ref.train(sentences, total_words=sum(counts.values()), epochs=3)
    for i in seen:
        np.testing.assert_allclose(tables["in_vectors"][i], ref.wv[words[i]], rtol=0, atol=1e-6)
        np.testing.assert_allclose(tables["out_vectors"][i], ref.syn1neg[ref.wv.key_to_index[words[i]]],
                                   rtol=0, atol=1e-6)
    assert np.abs(tables["out_vectors"][seen]).sum(axis=1).min() > 0      # output rows really copied


def test_public_is_deterministic_for_a_seed_across_processes(public_text):
    cfg = _public_cfg(public_text)
    family = models.make(cfg)
    a, _ = initial_tables(cfg, _words(), family, seed=5)
    b, _ = initial_tables(cfg, _words(), family, seed=5)
    c, _ = initial_tables(cfg, _words(), family, seed=6)
    for name in a:
        assert np.array_equal(a[name], b[name])
    assert not np.array_equal(a["in_vectors"], c["in_vectors"])
    digest = hashlib.sha256(a["in_vectors"].tobytes() + a["out_vectors"].tobytes()).hexdigest()
    code = (
        "import hashlib, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import test_init as t\n"
        "from pathlib import Path\n"
        "from fedembed import models\n"
        "from fedembed.models.init import initial_tables\n"
        "cfg = t._public_cfg(Path(sys.argv[2]))\n"
        "a, _ = initial_tables(cfg, t._words(), models.make(cfg), seed=5)\n"
        "print(hashlib.sha256(a['in_vectors'].tobytes() + a['out_vectors'].tobytes()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}                       # another string-hash seed
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(public_text)],
                         capture_output=True, text=True, env=env, check=True).stdout.split()[-1]
    assert out == digest


def test_public_result_is_cached_in_the_run_directory(public_text, tmp_path, monkeypatch):
    cfg = _public_cfg(public_text)
    family = models.make(cfg)
    first, desc = initial_tables(cfg, _words(), family, seed=0, cache_dir=tmp_path)
    assert (tmp_path / init_mod.CACHE).is_file()

    def no_training(*_args, **_kw):
        raise AssertionError("retrained although the cache matches")

    monkeypatch.setattr(init_mod, "_public_rows", no_training)
    again, desc2 = initial_tables(cfg, _words(), family, seed=0, cache_dir=tmp_path)
    assert desc2 == desc
    for name in first:
        assert np.array_equal(first[name], again[name])
    # a changed input (epochs) is not served from the cache
    with pytest.raises(AssertionError, match="retrained"):
        initial_tables(_public_cfg(public_text, init_epochs=4), _words(), family, seed=0, cache_dir=tmp_path)


def _save_vectors(path: Path, words: list[str], dim: int, binary: bool) -> np.ndarray:
    vecs = np.random.default_rng(1).normal(size=(len(words), dim)).astype(np.float32)
    kv = KeyedVectors(dim)
    kv.add_vectors(words, vecs)
    kv.save_word2vec_format(str(path), binary=binary)
    return vecs


@pytest.mark.parametrize("binary", [False, True])
def test_vectors_file_fills_input_rows_only(tmp_path, binary):
    path = tmp_path / ("v.bin" if binary else "v.txt")
    file_words = ["Cat", "dog", "car", "notinvocab"]                       # "Cat": matched case-folded
    vecs = _save_vectors(path, file_words, DIM, binary)
    cfg = _cfg(init=str(path))
    check(cfg)
    family = models.make(cfg)
    words = _words()
    tables, desc = initial_tables(cfg, words, family, seed=0)
    rand = family.init_tables(len(words), 0)
    assert desc["init"] == "file" and desc["rows_covered"] == 3 and desc["rows_random"] == len(words) - 3
    assert "zero" in desc["out_vectors"]
    for w, v in zip(["cat", "dog", "car"], vecs[:3]):
        np.testing.assert_allclose(tables["in_vectors"][words.index(w)], v, atol=1e-6)
    others = [i for i, w in enumerate(words) if w not in ("cat", "dog", "car")]
    assert np.array_equal(tables["in_vectors"][others], rand["in_vectors"][others])
    assert not tables["out_vectors"].any()


@pytest.mark.parametrize("binary", [False, True])
def test_vectors_file_of_the_wrong_dimension_is_refused_in_one_line(tmp_path, binary):
    path = tmp_path / ("v.bin" if binary else "v.txt")
    _save_vectors(path, ["cat", "dog"], DIM // 2, binary)
    cfg = _cfg(init=str(path))
    with pytest.raises(ConfigError) as err:
        check(cfg)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and f"{DIM // 2}-dimensional" in msg and f"model.dim is {DIM}" in msg
    with pytest.raises(ConfigError, match="dimensional"):
        initial_tables(cfg, _words(), models.make(cfg), seed=0)


@pytest.mark.parametrize("model, match", [
    ({"init": "nowhere/vectors.txt"}, "model.init: 'nowhere/vectors.txt' is neither"),
    ({"init": "random", "init_corpus": "x.txt"}, "model.init_corpus is only read"),
    ({"init": "public", "init_corpus": "no/such/dir"}, "model.init_corpus: no/such/dir does not exist"),
    ({"init": "public", "init_epochs": 0}, "model.init_epochs must be >= 1"),
])
def test_check_refuses_bad_settings_in_one_line(model, match):
    with pytest.raises(ConfigError, match=match) as err:
        check(_cfg(**model))
    assert "\n" not in str(err.value)


def test_check_refuses_a_warm_start_on_the_private_corpus(tmp_path, public_text):
    cfg = config.load(None, {"model.init": "public"})                      # data.corpus = builtin too
    with pytest.raises(ConfigError, match="which is data.corpus"):
        check(cfg)
    cfg = config.load(None, {"model.init": "public", "model.init_corpus": str(public_text),
                             "data.corpus": str(public_text)})
    with pytest.raises(ConfigError, match="which is data.corpus"):
        check(cfg)
    check(_public_cfg(public_text))                                         # distinct: accepted


def test_not_a_word2vec_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello world\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a word2vec text or binary file"):
        check(_cfg(init=str(path)))


def test_public_warm_start_on_the_builtin_corpus_is_real_training():
    """The warm start's WordSim353 is far above a random init's (≈ 0 ± 0.06), on the lists the report uses."""
    from fedembed.vocab import from_corpus

    words = from_corpus("builtin", min_count=5).words + ["zzzunseenword"]
    cfg = config.load(None, {"model.init": "public", "model.init_epochs": 5, "model.dim": 50,
                             "data.corpus": "private.jsonl"})
    family = models.make(cfg)
    tables, desc = initial_tables(cfg, words, family, seed=0)
    assert desc["rows_covered"] == len(words) - 1 and desc["rows_random"] == 1
    assert desc["trained_on"].startswith("builtin")
    public = public_only_quality(words, tables, family, analogies=False)
    random = public_only_quality(words, family.init_tables(len(words), 0), family, analogies=False)
    assert public["wordsim353"]["oov"] == random["wordsim353"]["oov"]       # same lists, same vocabulary
    assert public["wordsim353"]["spearman"] > 0.15
    assert public["wordsim353"]["spearman"] > random["wordsim353"]["spearman"] + 0.12
