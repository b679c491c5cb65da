"""Reading corpora (text, directory, JSON Lines, compressed, built-in), streaming, the tokenizer,
and the errors bad input gets."""
from __future__ import annotations

import bz2
import gzip
import json
import textwrap
from collections import Counter

import pytest

from fedembed.data.corpus import Document, detect_format, read_corpus
from fedembed.data.tokenize import tokenize
from fedembed.errors import CorpusError
from peak_memory import run_fresh


def docs(path, fmt="auto") -> list[Document]:
    return list(read_corpus(path, fmt))


# --------------------------------------------------------------------------- tokenizer

class TestTokenize:
    def test_casefold_and_punctuation(self):
        assert tokenize("Hello, World! THE end.") == ["hello", "world", "the", "end"]
        assert tokenize("Straße") == ["strasse"]  # casefold, not lower()

    def test_accents_kept(self):
        assert tokenize("Café naïve Ångström") == ["café", "naïve", "ångström"]

    def test_nfkc(self):
        # ligature, full-width letters, decomposed accent -> composed
        assert tokenize("\ufb01ne \uff21\uff22\uff23 e\u0301cole") == ["fine", "abc", "école"]

    def test_non_latin_scripts(self):
        assert tokenize("Ελληνικά Русский язык 中文") == ["ελληνικά", "русский", "язык", "中文"]

    def test_combining_marks_stay_inside_words(self):
        # Devanagari vowel signs and Arabic vowel points are combining marks (not \w in Python's re)
        assert tokenize("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
        assert tokenize("العَرَبِيَّة") == ["العَرَبِيَّة"]
        assert tokenize("\u0301abc") == ["abc"]  # a stray mark does not start a word

    def test_apostrophes(self):
        assert tokenize("don't can\u2019t") == ["don't", "can't"]  # curly apostrophe normalised
        assert tokenize("rock 'n' roll, dogs'") == ["rock", "n", "roll", "dogs"]

    def test_digits_and_underscores_dropped(self):
        assert tokenize("in 1999 abc123def foo_bar 42") == ["in", "abc", "def", "foo", "bar"]
        assert tokenize("123 456 ... !!!") == []

    def test_length_limits(self):
        long = "a" * 41
        assert tokenize(f"ok {long} fine") == ["ok", "fine"]
        assert tokenize("a bb ccc", min_len=2) == ["bb", "ccc"]


# --------------------------------------------------------------------------- formats

def test_text_file(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("The cat sat.\n\n1234\nOn the MAT!\n", encoding="utf-8")
    out = docs(p)
    assert [d.tokens for d in out] == [["the", "cat", "sat"], ["on", "the", "mat"]]
    assert {d.unit for d in out} == {"corpus.txt"}
    assert [d.origin for d in out] == [f"{p}:1", f"{p}:4"]  # line numbers skip the token-less lines
    assert detect_format(p) == "text"


def test_crlf_and_bom(tmp_path):
    p = tmp_path / "win.txt"
    p.write_bytes("\ufeffalpha beta\r\ngamma\r\n".encode("utf-8"))
    assert [d.tokens for d in docs(p)] == [["alpha", "beta"], ["gamma"]]


def test_directory_each_file_is_a_unit(tmp_path):
    root = tmp_path / "books"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("one two\nthree\n")
    (root / "sub" / "b.md").write_text("four five six\n")
    (root / ".hidden").write_text("secret words\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("ignored too\n")
    out = docs(root)
    assert detect_format(root) == "dir"
    units = Counter()
    for d in out:
        units[d.unit] += len(d.tokens)
    assert units == {"a.txt": 3, "sub/b.md": 3}
    assert all("secret" not in d.tokens and "ignored" not in d.tokens for d in out)


def test_jsonl_client_ids(tmp_path):
    p = tmp_path / "data.jsonl"
    rows = [{"client_id": "alice", "text": "Hello there"}, {"client_id": 7, "text": "numbers 123 dropped"},
            {"client_id": "7", "text": "same client"}, {"client_id": "alice", "text": "   "}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    out = docs(p)
    assert detect_format(p) == "jsonl"
    assert [(d.unit, d.tokens) for d in out] == [
        ("alice", ["hello", "there"]), ("7", ["numbers", "dropped"]), ("7", ["same", "client"])]
    assert out[1].origin == f"{p}:2"


def test_jsonl_without_client_ids_is_one_unit(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text('{"text": "no client id"}\n{"text": "nor here"}\n', encoding="utf-8")
    assert [(d.unit, d.tokens) for d in docs(p)] == [("data.jsonl", ["no", "client", "id"]),
                                                     ("data.jsonl", ["nor", "here"])]


@pytest.mark.parametrize("raw, got", [
    ("null", "got null"), ("NaN", "got NaN"), ("7.0", "got number 7.0"), ("1e400", "got number inf"),
    ("true", "got boolean true"), ('{"id": 1}', "got object"), ("[1]", "got array"), ('"  "', "got a blank string"),
    ('"\\ud800"', "not valid Unicode"),
])
def test_jsonl_client_id_that_is_not_an_id_is_refused(tmp_path, raw, got):
    """A missing/null/NaN/float/boolean/structured id was silently grouped under the file name."""
    p = tmp_path / "d.jsonl"
    p.write_text('{"client_id": "a", "text": "fine"}\n{"client_id": ' + raw + ', "text": "words"}\n')
    msg = raises(p, rf"^{p}:2: 'client_id' ")
    assert got in msg


@pytest.mark.parametrize("rows, line", [
    (['{"client_id": "a", "text": "x"}', '{"text": "y"}'], 2),
    (['{"text": "x"}', "", '{"client_id": "a", "text": "y"}'], 3),
])
def test_jsonl_mixing_records_with_and_without_client_id_is_refused(tmp_path, rows, line):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(rows) + "\n")
    assert "every record a client_id or none" in raises(p, rf"^{p}:{line}: record has")


def test_jsonl_with_bom(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(("\ufeff" + json.dumps({"client_id": "a", "text": "hello world"}) + "\n").encode("utf-8"))
    assert [(d.unit, d.tokens) for d in docs(p)] == [("a", ["hello", "world"])]


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (bz2.open, ".bz2")])
def test_compressed_text(tmp_path, opener, suffix):
    p = tmp_path / f"corpus.txt{suffix}"
    with opener(p, "wt", encoding="utf-8") as fh:
        for i in range(2000):
            fh.write(f"line {i} Ünïcode words here\n")
    out = docs(p)
    assert len(out) == 2000
    assert out[0].tokens == ["line", "ünïcode", "words", "here"]
    assert out[-1].origin == f"{p}:2000"


def test_compressed_jsonl(tmp_path):
    p = tmp_path / "data.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"client_id": "x", "text": "compressed json"}) + "\n")
    assert detect_format(p) == "jsonl"
    assert [(d.unit, d.tokens) for d in docs(p)] == [("x", ["compressed", "json"])]


def test_builtin_corpus():
    units = Counter()
    tokens = 0
    for d in read_corpus("builtin"):
        units[d.unit.split("/", 1)[0]] += 1
        tokens += len(d.tokens)
        assert d.unit.startswith(("lee/", "wiki/")) and d.tokens
    assert set(units) == {"lee", "wiki"}
    assert units["lee"] == 300            # one unit per Lee background document
    assert units["wiki"] >= 50            # Wikipedia articles of >= 10 tokens
    assert 400_000 < tokens < 650_000     # ~0.5M tokens


# --------------------------------------------------------------------------- streaming

_STREAM_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from fedembed.data.corpus import read_corpus
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = docs = 0
    for d in read_corpus(sys.argv[1]):
        n += len(d.tokens)
        docs += 1
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"tokens": n, "docs": docs, "growth_kb": after - before}))
""")


def test_large_file_is_streamed(tmp_path):
    """A 60 MB file is read line by line: peak memory grows by far less than the file."""
    line = "the quick brown fox jumps over the lazy dog " * 20 + "\n"  # 180 tokens, 901 bytes
    lines = 70_000
    p = tmp_path / "big.txt"
    block = line * 1000
    with open(p, "w", encoding="utf-8") as fh:
        for _ in range(lines // 1000):
            fh.write(block)
    size = p.stat().st_size
    assert size > 60e6
    res = run_fresh(_STREAM_SCRIPT, str(p), timeout=120)  # a grandchild: pytest's own peak would hide growth
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert out["docs"] == lines and out["tokens"] == 180 * lines
    growth = out["growth_kb"] * 1024
    assert growth < size / 10, f"peak memory grew by {growth / 1e6:.1f} MB reading a {size / 1e6:.0f} MB file"


# --------------------------------------------------------------------------- bad input

def raises(path, match, fmt="auto"):
    with pytest.raises(CorpusError, match=match) as info:
        docs(path, fmt)
    return str(info.value)


def test_missing_path(tmp_path):
    p = tmp_path / "nope.txt"
    assert str(p) in raises(p, "does not exist")
    assert str(p) in raises(p, "does not exist", fmt="text")


def test_unknown_format(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("hi\n")
    raises(p, "unknown corpus format 'xml'", fmt="xml")


def test_binary_file(tmp_path):
    p = tmp_path / "image.txt"
    p.write_bytes(b"GIF89a\x00\x01\x02\x00\xff" * 10)
    msg = raises(p, "binary")
    assert str(p) in msg


def test_binary_file_in_directory_is_named(tmp_path):
    (tmp_path / "ok.txt").write_text("fine words\n")
    (tmp_path / "zz.bin").write_bytes(b"\x00\x00\x00data")
    msg = raises(tmp_path, "binary")
    assert str(tmp_path / "zz.bin") in msg


@pytest.mark.parametrize("good_lines", [10, 20_000])  # inside the first decoded chunk, and far beyond it
def test_invalid_utf8_names_the_line(tmp_path, good_lines):
    p = tmp_path / "latin1.txt"
    p.write_bytes(b"plain ascii words\n" * good_lines + "caf\xe9 in latin-1\n".encode("latin-1") + b"more\n" * 5)
    raises(p, rf"{p}:{good_lines + 1}: not valid UTF-8")


def test_invalid_utf8_in_gzip_names_the_line(tmp_path):
    p = tmp_path / "bad.txt.gz"
    p.write_bytes(gzip.compress(b"ok line\n" * 3 + b"\xff\xfe bad\n"))
    raises(p, rf"{p}:4: not valid UTF-8")


def test_invalid_utf8_in_jsonl_names_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    raises(p, rf"{p}:2: not valid UTF-8")


def test_not_really_gzip(tmp_path):
    p = tmp_path / "fake.txt.gz"
    p.write_text("this is not gzip data\n")
    assert str(p) in raises(p, "cannot read corpus file")


@pytest.mark.parametrize("content", ["", "\n\n", "123 456\n... !!!\n"])
def test_empty_corpus(tmp_path, content):
    p = tmp_path / "empty.txt"
    p.write_text(content)
    assert str(p) in raises(p, "is empty")


def test_empty_jsonl(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"client_id": "a", "text": "42"}\n')
    assert str(p) in raises(p, "is empty")


def test_jsonl_without_text(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"client_id": "a", "text": "fine"}\n{"client_id": "b", "body": "oops"}\n')
    raises(p, rf"{p}:2: .*no 'text' field")


def test_jsonl_not_an_object(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('["text", "a list"]\n')
    raises(p, rf"{p}:1: .*no 'text' field")


def test_jsonl_invalid_json(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a"}\n\n{"text": "b",}\n')
    raises(p, rf"{p}:3: invalid JSON")


def test_jsonl_text_not_a_string(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": ["a", "b"]}\n')
    raises(p, rf"{p}:1: 'text' must be a string, got list")


def test_empty_directory(tmp_path):
    d = tmp_path / "nothing"
    d.mkdir()
    assert str(d) in raises(d, "holds no files")
    (d / ".hidden").write_text("only hidden files\n")
    assert str(d) in raises(d, "holds no files")


def test_directory_of_tokenless_files(tmp_path):
    (tmp_path / "a.txt").write_text("1 2 3\n")
    assert str(tmp_path) in raises(tmp_path, "is empty")


def test_errors_are_lazy_but_early(tmp_path):
    """The generator yields good documents, then stops at the bad line with the error."""
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "good one"}\n{"text": 5}\n')
    it = read_corpus(p)
    assert next(it).tokens == ["good", "one"]
    with pytest.raises(CorpusError, match=":2:"):
        next(it)
