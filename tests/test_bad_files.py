"""Damaged or hostile input files get one line naming the file (and line), exit code 2, and
leave nothing behind: `evaluate` / `export` on vectors files and run directories, JSON Lines."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fedembed import compose
from fedembed import checkpoint, models
from fedembed.cli import main
from fedembed.data.corpus import read_corpus
from fedembed.errors import CorpusError
from fedembed.export import export
from fedembed.vocab import Vocabulary

WORDS = ["king", "queen", "man", "woman", "cat", "tiger"]


def assert_one_line_error(argv, capsys, *fragments) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("fedembed: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and captured.out == ""
    for f in fragments:
        assert str(f) in err, err
    return err


@pytest.fixture
def vecs():
    return np.random.default_rng(0).standard_normal((len(WORDS), 6)).astype(np.float32)


@pytest.fixture
def run_dir(tmp_path, vecs):
    """A run directory as `simulate` leaves it: config, vocabulary, checkpoint."""
    d = tmp_path / "run"
    d.mkdir()
    cfg = compose.load(None, {"model.dim": 6})
    cfg.save(d / "config.toml")
    vocab = Vocabulary(WORDS, np.arange(len(WORDS), 0, -1) * 10)
    vocab.save(d / "vocab.tsv")
    tables = models.make(cfg).init_tables(len(WORDS), 0)
    tables["in_vectors"] = vecs.copy()
    checkpoint.save(d, checkpoint.State(3, tables, vocab.fingerprint()))
    return d


def listing(path):
    return sorted(p.relative_to(path) for p in path.rglob("*"))


# --------------------------------------------------------------------------- JSON Lines

def test_deeply_nested_jsonl_line_names_file_and_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"client_id": "a", "text": "fine"}\n{"text": ' + "[" * 200_000 + "\n")
    with pytest.raises(CorpusError, match=rf"^{p}:2: invalid JSON \(nested too deeply\)$"):
        list(read_corpus(p))


def test_jsonl_integer_beyond_python_conversion_limit(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"client_id": ' + "9" * 5000 + ', "text": "fine"}\n')
    with pytest.raises(CorpusError, match=rf"^{p}:1: invalid JSON"):
        list(read_corpus(p))


# --------------------------------------------------------------------------- .npy + .vocab.txt

@pytest.mark.parametrize("vocab_text, fragment", [
    ("king\nqueen\n", "has 2 words but"),
    ("\n".join(WORDS + ["extra"]) + "\n", ":7: more words than the 6 vectors"),
    ("\n".join(WORDS[:5] + ["king"]) + "\n", ":6: word 'king' is given twice"),
    ("king\n\nman\nwoman\ncat\ntiger\n", ":2: a word must be non-empty"),
])
def test_npy_with_mismatched_vocabulary(tmp_path, vecs, capsys, vocab_text, fragment):
    export(WORDS, vecs, tmp_path / "v", "npy")
    (tmp_path / "v.vocab.txt").write_text(vocab_text)
    for cmd in (["evaluate", str(tmp_path / "v.npy")], ["export", str(tmp_path / "v.npy"), str(tmp_path / "o.txt")]):
        assert_one_line_error(cmd, capsys, tmp_path / "v.vocab.txt", fragment)
    assert not (tmp_path / "o.txt").exists()


@pytest.mark.parametrize("array, fragment", [
    (np.zeros((2, 3, 4), dtype=np.float32), "expected a 2-D float array"),
    (np.array(["a", "b"]), "expected a 2-D float array"),
    (np.zeros((0, 3), dtype=np.float32), "at least one vector"),
])
def test_npy_of_the_wrong_kind(tmp_path, capsys, array, fragment):
    np.save(tmp_path / "v.npy", array)
    (tmp_path / "v.vocab.txt").write_text("a\nb\n")
    assert_one_line_error(["evaluate", str(tmp_path / "v.npy")], capsys, tmp_path / "v.npy", fragment)


def test_npy_truncated(tmp_path, vecs, capsys):
    export(WORDS, vecs, tmp_path / "v", "npy")
    data = (tmp_path / "v.npy").read_bytes()
    (tmp_path / "v.npy").write_bytes(data[:-7])
    assert_one_line_error(["evaluate", str(tmp_path / "v.npy")], capsys, tmp_path / "v.npy", "not a readable .npy")


# --------------------------------------------------------------------------- checkpoint.npz

@pytest.mark.parametrize("keep", [0.0, 0.2, 0.5, 0.9, 0.999])
def test_truncated_checkpoint(run_dir, capsys, keep):
    ckpt = run_dir / "checkpoint.npz"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:int(len(data) * keep)])
    before = listing(run_dir.parent)
    out = run_dir.parent / "exported.txt"
    assert_one_line_error(["evaluate", str(run_dir)], capsys, ckpt, "unreadable")
    assert_one_line_error(["export", str(run_dir), str(out)], capsys, ckpt, "unreadable")
    assert listing(run_dir.parent) == before


def test_checkpoint_of_another_vocabulary_or_shape(run_dir, capsys):
    Vocabulary(WORDS[:-1] + ["lion"], np.arange(len(WORDS), 0, -1) * 10).save(run_dir / "vocab.tsv")
    assert_one_line_error(["evaluate", str(run_dir)], capsys, run_dir / "checkpoint.npz", "another vocabulary")


def test_checkpoint_without_the_model_table(run_dir, vecs, capsys):
    vocab = Vocabulary.load(run_dir / "vocab.tsv")
    checkpoint.save(run_dir, checkpoint.State(1, {"other": vecs}, vocab.fingerprint()))
    assert_one_line_error(["evaluate", str(run_dir)], capsys, run_dir / "checkpoint.npz", "'in_vectors'")


def test_damaged_report_json_is_named(run_dir, capsys):
    (run_dir / "report.json").write_text('{"quality": ')
    assert_one_line_error(["export", str(run_dir), str(run_dir / "x.txt")], capsys, run_dir / "report.json")
    assert not (run_dir / "x.txt").exists()


def test_good_run_directory_still_evaluates(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--no-analogies"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"wordsim353", "simlex999"}


# --------------------------------------------------------------------------- word2vec headers

@pytest.mark.parametrize("fmt", ["word2vec-text", "word2vec-binary"])
def test_header_claiming_too_many_rows(tmp_path, vecs, capsys, fmt):
    p = tmp_path / ("v.txt" if fmt == "word2vec-text" else "v.bin")
    export(WORDS, vecs, p, fmt)
    body = p.read_bytes().split(b"\n", 1)[1]
    p.write_bytes(b"99999999999 6\n" + body)
    err = assert_one_line_error(["evaluate", str(p)], capsys, p, "the header gives 99999999999 vectors",
                                "the file ends after 6")
    if fmt == "word2vec-text":
        assert f"{p}:7:" in err


@pytest.mark.parametrize("header, fragment", [
    (b"6 99999999999\n", "dimension 99999999999"), (b"-3 6\n", "-3 vectors"), (b"6\n", "'ROWS DIM'"),
    (b"six 6\n", "'ROWS DIM'"), (b"1" * 5000 + b" 6\n", "'ROWS DIM'"),
])
def test_bad_headers(tmp_path, capsys, header, fragment):
    p = tmp_path / "v.txt"
    p.write_bytes(header + b"king 1 2 3 4 5 6\n")
    assert_one_line_error(["evaluate", str(p)], capsys, f"{p}:1:", fragment)


def test_text_vectors_errors_name_the_line(tmp_path, capsys):
    p = tmp_path / "v.txt"
    p.write_text("3 2\nking 1 2\nqueen 1 x\nman 1 2\n")
    assert_one_line_error(["evaluate", str(p)], capsys, f"{p}:3:", "could not convert")
    p.write_text("2 2\nking 1 2\nqueen 1 2\nman 1 2\n")
    assert_one_line_error(["evaluate", str(p)], capsys, f"{p}:4: more vectors than the header's 2")


# --------------------------------------------------------------------------- export destinations

def test_export_to_an_existing_directory(tmp_path, run_dir, capsys):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    before = listing(tmp_path)
    for fmt in ("word2vec-text", "word2vec-binary"):
        assert_one_line_error(["export", str(run_dir), str(target), "--format", fmt], capsys, target, "directory")
    assert listing(tmp_path) == before  # no .tmp, nothing replaced
    (tmp_path / "v.npy").mkdir()
    assert_one_line_error(["export", str(run_dir), str(tmp_path / "v.out"), "--format", "npy"], capsys,
                          tmp_path / "v.npy", "directory")
    assert not (tmp_path / "v.vocab.txt").exists()


def test_export_under_a_file_leaves_nothing(tmp_path, run_dir, capsys):
    (tmp_path / "afile").write_text("x")
    before = listing(tmp_path)
    assert_one_line_error(["export", str(run_dir), str(tmp_path / "afile" / "sub" / "v.txt")], capsys, "cannot write")
    assert listing(tmp_path) == before


def test_export_failing_midway_keeps_the_old_file_and_no_temporaries(tmp_path, vecs, monkeypatch, capsys):
    from gensim.models import KeyedVectors

    target = tmp_path / "new" / "deeper" / "v.txt"
    old = tmp_path / "old.txt"
    export(WORDS, vecs, old, "word2vec-text")
    before_old = old.read_bytes()

    def half_then_fail(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"6 6\nking 0.1")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(KeyedVectors, "save_word2vec_format", half_then_fail)
    before = listing(tmp_path)
    assert_one_line_error(["export", str(old), str(target)], capsys, target, "No space left on device")
    assert_one_line_error(["export", str(old), str(old)], capsys, old, "No space left on device")
    assert listing(tmp_path) == before  # neither the temporary nor the folders made for it remain
    assert old.read_bytes() == before_old


# --------------------------------------------------------------------------- NaN rows (issue item 21)

@pytest.mark.parametrize("fmt", ["word2vec-text", "word2vec-binary", "npy"])
def test_evaluate_refuses_vectors_with_nan_rows(tmp_path, vecs, capsys, fmt):
    vecs[3, 2] = np.nan
    vecs[5, 0] = np.inf
    p = tmp_path / {"word2vec-text": "v.txt", "word2vec-binary": "v.bin", "npy": "v"}[fmt]
    written = export(WORDS, vecs, p, fmt)[0]
    assert_one_line_error(["evaluate", str(written)], capsys, written, "'woman' (row 4)", "NaN or infinity",
                          "2 of its 6 rows")


def test_evaluate_refuses_a_run_whose_checkpoint_holds_nan(run_dir, vecs, capsys):
    vocab = Vocabulary.load(run_dir / "vocab.tsv")
    state = checkpoint.load(run_dir)
    state.tables["in_vectors"][1] = np.nan
    checkpoint.save(run_dir, checkpoint.State(state.round, state.tables, vocab.fingerprint()))
    assert_one_line_error(["evaluate", str(run_dir)], capsys, run_dir / "checkpoint.npz", "'queen'")
