"""Exporting vectors (word2vec text/binary, npy) and the `fedembed` command line."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from gensim.models import KeyedVectors

from fedembed.cli import main
from fedembed.export import FORMATS, export, keyed_vectors, load_vectors

# words from WordSim353 / SimLex999 / the analogy list, plus non-ASCII ones
WORDS = ["king", "queen", "man", "woman", "tiger", "cat", "car", "automobile", "money", "cash",
         "boy", "girl", "brother", "sister", "father", "mother", "café", "日本"]


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    return rng.standard_normal((len(WORDS), 12)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["word2vec-text", "word2vec-binary"])
def test_export_prints_no_gensim_warning_and_keeps_its_log_level(tmp_path, vectors, caplog, fmt):
    """gensim warns that the vectors carry no `count` (their order is the vocabulary's already);
    `fedembed simulate` printed that twice a run."""
    gensim_log = logging.getLogger("gensim.models.keyedvectors")
    gensim_log.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.WARNING):
            export(WORDS, vectors, tmp_path / "v", fmt)
        assert [r.getMessage() for r in caplog.records if r.name.startswith("gensim")] == []
        assert gensim_log.level == logging.INFO
    finally:
        gensim_log.setLevel(logging.NOTSET)
    assert list(load_vectors(tmp_path / "v").index_to_key) == WORDS  # still in the vocabulary's order


@pytest.fixture
def vec_file(tmp_path, vectors):
    p = tmp_path / "vecs.txt"
    export(WORDS, vectors, p, "word2vec-text")
    return p


# --------------------------------------------------------------------------- export

@pytest.mark.parametrize("fmt,binary", [("word2vec-text", False), ("word2vec-binary", True)])
def test_word2vec_export_loads_in_gensim(tmp_path, vectors, fmt, binary):
    p = tmp_path / "out" / f"vecs.{fmt}"
    assert export(WORDS, vectors, p, fmt) == [p]
    assert not p.with_name(p.name + ".tmp").exists()
    kv = KeyedVectors.load_word2vec_format(str(p), binary=binary)
    assert list(kv.index_to_key) == WORDS
    assert kv.vectors.shape == vectors.shape
    np.testing.assert_allclose(kv.vectors, vectors, rtol=1e-6, atol=1e-7)
    assert np.isclose(kv.similarity("king", "queen"),
                      vectors[0] @ vectors[1] / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[1]), atol=1e-5)
    # load_vectors tells the two apart by content, whatever the suffix
    np.testing.assert_allclose(load_vectors(p).vectors, vectors, rtol=1e-6, atol=1e-7)


def test_binary_export_with_bin_suffix(tmp_path, vectors):
    p = tmp_path / "vecs.bin"
    export(WORDS, vectors, p, "word2vec-binary")
    kv = load_vectors(p)
    assert list(kv.index_to_key) == WORDS
    np.testing.assert_array_equal(kv.vectors, vectors)


def test_npy_export_roundtrip(tmp_path, vectors):
    out = export(WORDS, vectors, tmp_path / "vecs", "npy")
    assert out == [tmp_path / "vecs.npy", tmp_path / "vecs.vocab.txt"]
    np.testing.assert_array_equal(np.load(out[0]), vectors)
    assert out[1].read_text(encoding="utf-8").splitlines() == WORDS
    kv = load_vectors(out[0])
    assert list(kv.index_to_key) == WORDS
    np.testing.assert_array_equal(kv.vectors, vectors)


def test_export_unknown_format(tmp_path, vectors):
    assert set(FORMATS) == {"word2vec-text", "word2vec-binary", "npy"}
    with pytest.raises(ValueError, match="unknown export format"):
        export(WORDS, vectors, tmp_path / "x", "glove")


def test_keyed_vectors_casts_to_float32():
    kv = keyed_vectors(["a", "b"], np.ones((2, 3), dtype=np.float64))
    assert kv.vectors.dtype == np.float32 and kv.vector_size == 3


# --------------------------------------------------------------------------- CLI evaluate / export

def test_cli_evaluate(vec_file, capsys):
    assert main(["evaluate", str(vec_file)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"wordsim353", "simlex999", "analogy"}
    for name in ("wordsim353", "simlex999"):
        assert {"spearman", "pearson", "oov"} <= set(result[name])
        assert 0.0 <= result[name]["oov"] < 1.0  # some pairs are covered by the small vocabulary
        assert result[name]["spearman"] is None or -1.0 <= result[name]["spearman"] <= 1.0
    assert {"accuracy", "oov"} <= set(result["analogy"])
    assert 0.0 < result["analogy"]["oov"] <= 1.0


def test_cli_evaluate_no_analogies_and_binary_input(tmp_path, vectors, capsys):
    p = tmp_path / "vecs.w2v"  # binary content, no .bin suffix
    export(WORDS, vectors, p, "word2vec-binary")
    assert main(["evaluate", str(p), "--no-analogies"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"wordsim353", "simlex999"}


@pytest.mark.parametrize("fmt", ["word2vec-text", "word2vec-binary", "npy"])
def test_cli_export(tmp_path, vec_file, vectors, fmt, capsys):
    out = tmp_path / "exported" / "v.out"
    assert main(["export", str(vec_file), str(out), "--format", fmt]) == 0
    printed = capsys.readouterr().out.split()
    if fmt == "npy":
        assert printed == [str(out.with_suffix(".npy")), str(out.with_suffix(".vocab.txt"))]
        kv = load_vectors(out.with_suffix(".npy"))
    else:
        assert printed == [str(out)]
        kv = KeyedVectors.load_word2vec_format(str(out), binary=fmt == "word2vec-binary")
    assert list(kv.index_to_key) == WORDS
    np.testing.assert_allclose(kv.vectors, vectors, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- CLI errors

def assert_cli_error(argv, capsys, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedembed: error: ")
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, err


def test_cli_missing_path(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    assert_cli_error(["evaluate", str(missing)], capsys, str(missing))
    assert_cli_error(["export", str(missing), str(tmp_path / "o.txt")], capsys, str(missing))
    assert not (tmp_path / "o.txt").exists()


def test_cli_unreadable_vectors_file(tmp_path, capsys):
    p = tmp_path / "notes.txt"
    p.write_text("hello world this is not a vectors file\n")
    assert_cli_error(["evaluate", str(p)], capsys, str(p))
    npy = tmp_path / "orphan.npy"
    np.save(npy, np.zeros((2, 3), dtype=np.float32))  # no orphan.vocab.txt next to it
    assert_cli_error(["evaluate", str(npy)], capsys, str(npy))


def test_cli_evaluate_vectors_covering_no_pairs(tmp_path, capsys):
    p = tmp_path / "other.txt"
    export(["zzzq", "yyyq"], np.eye(2, dtype=np.float32), p, "word2vec-text")
    assert main(["evaluate", str(p), "--no-analogies"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["wordsim353"]["oov"] == 1.0 and result["wordsim353"]["spearman"] is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_cli_simulate_bad_config(tmp_path, capsys):
    out = tmp_path / "run"
    missing = tmp_path / "missing.toml"
    assert_cli_error(["simulate", "--config", str(missing), "--out", str(out)], capsys, "config file does not exist",
                     str(missing))
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\ndimension = 50\n")
    assert_cli_error(["simulate", "--config", str(bad), "--out", str(out)], capsys, str(bad), "model.dimension")
    assert_cli_error(["simulate", "--out", str(out), "--set", "model.dim=abc"], capsys, "model.dim: expected int")
    assert_cli_error(["simulate", "--out", str(out), "--set", "model.dim"], capsys, "--set expects KEY=VALUE")
    assert_cli_error(["simulate", "--out", str(out), "--clients", "0"], capsys, "partition.num_clients must be > 0")
    assert not out.exists()  # nothing was started


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "only-one-arg"])
    assert info.value.code == 2
