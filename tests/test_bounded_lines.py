"""Every line-oriented reader bounds a line (fedembed/data/lines.py): a file without line breaks
is refused with its file and line, and memory stays far below the file's size."""
from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import textwrap

import numpy as np
import pytest

from fedembed.data.corpus import read_corpus
from fedembed.data.lines import MAX_LINE_BYTES, raw_lines, text_lines
from fedembed.errors import CorpusError
from fedembed.export import export, load_vectors
from fedembed.vocab import read_word_list
from peak_memory import run_fresh

LONG = MAX_LINE_BYTES + 1

# --------------------------------------------------------------------------- the line reader


def test_a_line_of_exactly_the_limit_is_read():
    data = b"a" * MAX_LINE_BYTES + b"\n" + b"b" * MAX_LINE_BYTES
    lines = list(raw_lines(io.BytesIO(data), "f"))
    assert [(n, len(line)) for n, line in lines] == [(1, MAX_LINE_BYTES + 1), (2, MAX_LINE_BYTES)]


@pytest.mark.parametrize("data, lineno", [(b"a" * LONG, 1), (b"ok\n" + b"a" * LONG + b"\n", 2)])
def test_a_longer_line_is_refused_with_its_number(data, lineno):
    with pytest.raises(CorpusError, match=rf"^f:{lineno}: line longer than {MAX_LINE_BYTES} bytes"):
        list(raw_lines(io.BytesIO(data), "f"))


def test_text_lines_are_universal_newlines_with_exact_numbers():
    data = "\ufeffone\r\ntwo\rthree\n\nfour".encode("utf-8")
    assert list(text_lines(io.BytesIO(data), "f")) == [(1, "one"), (2, "two"), (3, "three"), (4, ""), (5, "four")]
    with pytest.raises(CorpusError, match=r"^f:3: not valid UTF-8"):
        list(text_lines(io.BytesIO(b"a\rb\n\xff\n"), "f"))


# --------------------------------------------------------------------------- each reader refuses, naming file:line

def _corpus(p):
    return list(read_corpus(p))


@pytest.mark.parametrize("name, opener", [("c.txt", open), ("c.txt.gz", gzip.open), ("c.txt.bz2", bz2.open),
                                          ("c.jsonl", open)])
def test_corpus_readers_refuse_an_overlong_line(tmp_path, name, opener):
    p = tmp_path / name
    first = b'{"text": "fine words"}\n' if name.endswith(".jsonl") else b"fine words\n"
    with opener(p, "wb") as fh:
        fh.write(first + b"a" * LONG)
    it = read_corpus(p)
    assert next(it).tokens == ["fine", "words"]  # what comes before is read
    with pytest.raises(CorpusError, match=rf"^{p}:2: line longer than"):
        next(it)


def test_directory_reader_names_the_file(tmp_path):
    (tmp_path / "a.txt").write_text("fine\n")
    (tmp_path / "b.txt").write_bytes(b"x" * LONG)
    with pytest.raises(CorpusError, match=rf"^{tmp_path / 'b.txt'}:1: line longer than"):
        _corpus(tmp_path)


def test_word_list_refuses_an_overlong_line(tmp_path):
    p = tmp_path / "words.txt"
    p.write_bytes(b"the 10\n" + b"a" * LONG)
    with pytest.raises(CorpusError, match=rf"^{p}:2: line longer than"):
        read_word_list(p)


@pytest.mark.parametrize("content, lineno", [(b"a" * LONG, 1), (b"2 3\n" + b"a" * LONG, 2),
                                             (b"2 1\nw 1.0\n" + b"a" * LONG, 3)])
def test_word2vec_text_refuses_an_overlong_line(tmp_path, content, lineno):
    p = tmp_path / "v.txt"
    p.write_bytes(content)
    with pytest.raises(CorpusError, match=rf"{p}(:{lineno}: line longer than|: vector 1: no space after)"):
        load_vectors(p)


def test_word2vec_binary_refuses_a_word_without_end(tmp_path):
    p = tmp_path / "v.bin"
    p.write_bytes(b"1 2\n" + b"a" * (LONG + 10))
    with pytest.raises(CorpusError, match=rf"^{p}: vector 1: no space after {MAX_LINE_BYTES} bytes"):
        load_vectors(p)


def test_npy_vocabulary_refuses_an_overlong_line(tmp_path):
    export(["a", "b"], np.eye(2, dtype=np.float32), tmp_path / "v", "npy")
    (tmp_path / "v.vocab.txt").write_bytes(b"a\n" + b"b" * LONG)
    with pytest.raises(CorpusError, match=rf"^{tmp_path / 'v.vocab.txt'}:2: line longer than"):
        load_vectors(tmp_path / "v.npy")


# --------------------------------------------------------------------------- memory, measured

_MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from fedembed.data.corpus import read_corpus
    from fedembed.errors import CorpusError
    from fedembed.export import load_vectors
    from fedembed.vocab import read_word_list

    readers = {"corpus": lambda p: list(read_corpus(p)), "words": read_word_list, "vectors": load_vectors}
    files = json.loads(sys.argv[1])
    for kind, path in json.loads(sys.argv[2]):  # warm up: lazy imports and first allocations don't count
        readers[kind](path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = {}
    for kind, path in files:
        try:
            readers[kind](path)
            errors[path] = None
        except CorpusError as exc:
            errors[path] = str(exc)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"errors": errors, "growth_kb": after - before}))
""")


def test_memory_stays_bounded_on_a_file_without_line_breaks(tmp_path):
    """An 80 MB line in each line-oriented format: each reader refuses it early, and the process'
    peak memory grows by far less than the file (it grew by several times the file before)."""
    size = 80 * 2 ** 20
    blob = b"a" * size  # one 80 MB "word": no line break, no space
    plain = tmp_path / "plain.txt"
    plain.write_bytes(blob)
    (tmp_path / "dir").mkdir()
    os.link(plain, tmp_path / "dir" / "part.txt")
    (tmp_path / "plain.txt.gz").write_bytes(gzip.compress(blob, compresslevel=1))
    (tmp_path / "data.jsonl").write_bytes(b'{"client_id": "a", "text": "' + blob)
    os.link(plain, tmp_path / "words.txt")
    os.link(plain, tmp_path / "vectors.txt")  # the header line itself has no end
    (tmp_path / "vectors.bin").write_bytes(b"2 3\n" + blob)
    export(["a", "b"], np.eye(2, dtype=np.float32), tmp_path / "arr", "npy")
    (tmp_path / "arr.vocab.txt").unlink()
    os.link(plain, tmp_path / "arr.vocab.txt")  # the .npy's words
    files = [("corpus", str(tmp_path / f)) for f in ("plain.txt", "dir", "plain.txt.gz", "data.jsonl")]
    files += [("words", str(tmp_path / "words.txt")), ("vectors", str(tmp_path / "vectors.txt")),
              ("vectors", str(tmp_path / "vectors.bin")), ("vectors", str(tmp_path / "arr.npy"))]
    warm = tmp_path / "warm"
    warm.mkdir()
    (warm / "c.txt").write_text("some words\n")
    (warm / "c.jsonl").write_text('{"client_id": "a", "text": "some words"}\n')
    (warm / "w.txt").write_text("the 3\n")
    export(["a", "b"], np.eye(2, dtype=np.float32), warm / "v.txt", "word2vec-text")
    export(["a", "b"], np.eye(2, dtype=np.float32), warm / "v.bin", "word2vec-binary")
    warmup = [("corpus", str(warm / "c.txt")), ("corpus", str(warm / "c.jsonl")), ("words", str(warm / "w.txt")),
              ("vectors", str(warm / "v.txt")), ("vectors", str(warm / "v.bin"))]
    res = run_fresh(_MEMORY_SCRIPT, json.dumps(files), json.dumps(warmup))
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    for _, path in files:
        err = out["errors"][path]
        assert err is not None, f"{path} was read whole"
        assert "line longer than" in err or "no space after" in err, err
        assert "\n" not in err
    growth = out["growth_kb"] * 1024
    assert growth < size / 4, f"peak memory grew by {growth / 2**20:.1f} MiB reading {size / 2**20:.0f} MiB lines"
