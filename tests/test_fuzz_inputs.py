"""Property-based fuzzing of everything fedembed reads from a user or a client: corpus files,
JSON Lines, word lists, scenario TOML, word2vec text/binary and .npy vectors, checkpoints,
and client updates as the server parses and sums them.

Each input is either read correctly or refused with the right error type (CorpusError,
ConfigError, CheckpointError, UpdateError) in one line naming the input; through the CLI,
exit code 2 and a single `fedembed: error: ...` line on stderr, and nothing partial left.
Examples are drawn from the "repeatable" profile (tests/conftest.py): the same on every run.
About 1,500 examples in all, in about a minute.
"""
from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import subprocess
import sys
import tempfile
from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from fedembed import compose
from fedembed import checkpoint, models
from fedembed.aggregate.accumulate import Accumulator
from fedembed.cli import main
from fedembed.data.corpus import read_corpus
from fedembed.data.tokenize import tokenize
from fedembed.errors import CheckpointError, ConfigError, CorpusError, FedembedError, UpdateError
from fedembed.export import export, load_vectors
from fedembed.federation import wire
from fedembed.vocab import MAX_COUNT, Vocabulary, read_word_list


def fuzz(examples: int) -> settings:
    """The loaded profile (derandomized) with `examples` examples and no per-example deadline
    (a loaded machine makes timings noise)."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def assert_one_line(msg: str, *names: object) -> None:
    assert "\n" not in msg and "Traceback" not in msg, msg
    for n in names:
        assert str(n) in msg, (n, msg)


def cli(argv: list[str]) -> tuple[int, str]:
    """`fedembed ARGV` in this process: (exit code, stderr); stdout is discarded."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def assert_refused_or_ok(argv: list[str], *names: object) -> int:
    rc, err = cli(argv)
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        assert err.startswith("fedembed: error: ") and err.count("\n") == 1, err
        assert_one_line(err.rstrip("\n"), *names)
    return rc


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# --------------------------------------------------------------------------- byte-level mutations

@st.composite
def mutated(draw, data: bytes) -> bytes:
    """`data` truncated, with bytes overwritten, inserted or appended (or left alone)."""
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "append", "none"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "none" or not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    junk = draw(st.binary(min_size=1, max_size=8))
    if kind == "flip":
        return data[:at] + junk + data[at + len(junk):]
    if kind == "insert":
        return data[:at] + junk + data[at:]
    return data + junk


# --------------------------------------------------------------------------- corpus text files

_VALID_PIECES = st.one_of(
    st.text(max_size=25).map(lambda s: s.encode("utf-8")),
    st.sampled_from(["the cat sat", "Ünïcode wörds", "don't stop", "日本語 テキスト", "\u0301abc", "1234 !!",
                     "e\u0301cole", "\ufeffbom"]).map(lambda s: s.encode("utf-8")),
)
_PIECES = st.one_of(
    _VALID_PIECES,
    st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]),
    st.binary(max_size=12),
)
_BREAKS = st.sampled_from([b"\n", b"\r\n", b"\r", b"", b"\n\n"])
_TEXT = st.one_of(  # mostly valid UTF-8 (read line by line), sometimes anything
    *[st.lists(st.tuples(pieces, _BREAKS), max_size=12).map(lambda parts: b"".join(a + b for a, b in parts))
      for pieces in (_VALID_PIECES, _VALID_PIECES, _PIECES)])


def expected_corpus(data: bytes, name: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """What reading `data` as a text corpus must give: ("ok", [(origin line, tokens)]), or
    ("error", what the message must contain) — from Python's own text layer."""
    if b"\x00" in data[:8192]:
        return "error", "looks binary"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        head = data[:exc.start]
        line = 1 + head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n")
        return "error", f"{name}:{line}: not valid UTF-8"
    fh = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=None)
    docs = [(f"{name}:{i}", tokenize(line)) for i, line in enumerate(fh, start=1)]
    docs = [d for d in docs if d[1]]
    return ("ok", docs) if docs else ("error", "is empty")


@fuzz(220)
@given(data=_TEXT, container=st.sampled_from(["plain", "plain", "gz", "bz2", "dir"]))
def test_fuzz_corpus_text(data, container):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        if container == "dir":
            (root / "corpus").mkdir()
            (root / "corpus" / "ok.txt").write_text("fine words\n")
            path, named = root / "corpus", root / "corpus" / "z.txt"
            named.write_bytes(data)
        else:
            path = named = root / {"plain": "c.txt", "gz": "c.txt.gz", "bz2": "c.txt.bz2"}[container]
            opener = {"plain": open, "gz": gzip.open, "bz2": bz2.open}[container]
            with opener(named, "wb") as fh:
                fh.write(data)
        outcome, want = expected_corpus(data, str(named))
        try:
            got = [(doc.origin, doc.tokens) for doc in read_corpus(path) if doc.origin.startswith(str(named))]
        except CorpusError as exc:
            event(f"refused: {want}" if "UTF-8" not in want else "refused: not valid UTF-8")
            assert_one_line(str(exc), named if container != "dir" or "is empty" not in str(exc) else path)
            assert outcome == "error" and want in str(exc), (want, str(exc))
            return
        event("read")
        assert outcome == "ok" or (container == "dir" and want == "is empty"), (want, got)
        assert got == (want if outcome == "ok" else [])


@fuzz(60)
@given(data=_TEXT.map(lambda b: b + b"more words\n"), cut=st.integers(1, 60), fmt=st.sampled_from(["gz", "bz2"]))
def test_fuzz_damaged_compressed_corpus(data, cut, fmt):
    blob = (gzip.compress if fmt == "gz" else bz2.compress)(data * 3)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"c.txt.{fmt}"
        p.write_bytes(blob[:max(1, len(blob) - cut)])
        try:
            list(read_corpus(p))
        except CorpusError as exc:
            assert_one_line(str(exc), p)


# --------------------------------------------------------------------------- JSON Lines

_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                          st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
_JSON = st.recursive(_JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                     max_leaves=6)
_ID = st.one_of(st.text(max_size=6), st.integers(-10**20, 10**20), _JSON)
_RECORD = st.fixed_dictionaries({}, optional={"client_id": _ID, "text": st.one_of(
    st.sampled_from(["the cat sat", "dogs' day", "1 2 3", "", "Ünïcode"]), st.text(max_size=12), _JSON)})
_LINE = st.one_of(
    _RECORD.map(json.dumps), _RECORD.map(json.dumps), _RECORD.map(json.dumps),
    st.sampled_from(["", "   ", "{", "[1, 2]", '"text"', '{"text": "a",}', "[" * 3000 + "]" * 3000, "{" * 100_000,
                     '{"text": "ok", "client_id": NaN}', '{"text": "ok", "client_id": -Infinity}']),
    st.text(max_size=20).filter(lambda s: not any(c in s for c in "\r\n\x00")),
)


def expected_jsonl(lines: list[str], name: str):
    """The JSON Lines rules (fedembed.data.corpus._read_jsonl), restated: ("ok", [(unit, tokens)])
    or ("error", "FILE:LINE: ...what")."""
    docs, first = [], None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            return "error", f"{name}:{i}: invalid JSON"
        if not isinstance(obj, dict) or "text" not in obj:
            return "error", f"{name}:{i}: JSON Lines record has no 'text'"
        if not isinstance(obj["text"], str):
            return "error", f"{name}:{i}: 'text' must be a string"
        has = "client_id" in obj
        first = has if first is None else first
        if has != first:
            return "error", f"{name}:{i}: record has"
        unit = Path(name).name
        if has:
            cid = obj["client_id"]
            if isinstance(cid, int) and not isinstance(cid, bool):
                unit = str(cid)
            elif isinstance(cid, str) and cid.strip():
                unit = cid
            else:
                return "error", f"{name}:{i}: 'client_id' must be"
        if tokenize(obj["text"]):
            docs.append((unit, tokenize(obj["text"])))
    return ("ok", docs) if docs else ("error", "is empty")


@st.composite
def jsonl_file(draw) -> list[str]:
    """Mostly a well-formed file (every record with a good client_id, or none with one), with
    sometimes one line from anywhere; or lines drawn freely."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.lists(_LINE, max_size=8))
    with_ids = draw(st.booleans())
    good_id = st.one_of(st.text(min_size=1, max_size=6).filter(lambda t: t.strip()), st.integers(-10**20, 10**20))
    texts = st.one_of(st.sampled_from(["the cat sat", "dogs' day", "Ünïcode wörds", "1 2"]), st.text(max_size=12))
    records = draw(st.lists(st.fixed_dictionaries(
        {"text": texts, **({"client_id": good_id} if with_ids else {})}), min_size=1, max_size=6))
    lines = [json.dumps(r) for r in records]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(_LINE))
    return lines


@fuzz(220)
@given(lines=jsonl_file())
def test_fuzz_jsonl(lines):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.jsonl"
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        outcome, want = expected_jsonl(lines, str(p))
        try:
            got = [(doc.unit, doc.tokens) for doc in read_corpus(p)]
        except CorpusError as exc:
            event("refused: " + want.split(": ", 1)[-1])
            assert_one_line(str(exc), p)
            assert outcome == "error" and want in str(exc), (want, str(exc))
            return
        event("read")
        assert (outcome, got) == ("ok", want)


# --------------------------------------------------------------------------- word lists

_WORD_LINE = st.one_of(
    st.sampled_from(["the", "cat", "Straße", "don't", "日本", "# comment", "", "   "]),
    st.tuples(st.sampled_from(["the", "cat", "dog", "über"]), st.integers(-3, MAX_COUNT * 2))
    .map(lambda t: f"{t[0]} {t[1]}"),
    st.tuples(st.sampled_from(["a", "b"]), st.text(max_size=6)).map(lambda t: f"{t[0]}\t{t[1]}"),
    st.text(max_size=15).filter(lambda s: not any(c in s for c in "\r\n")),
)


@fuzz(150)
@given(lines=st.one_of(
    st.lists(st.tuples(st.sampled_from(["the", "cat", "dog", "über", "日本", "don't"]), st.integers(1, 10**6))
             .map(lambda t: f"{t[0]} {t[1]}"), min_size=1, max_size=6),
    st.lists(st.sampled_from(["the", "cat", "dog", "über", "# note", ""]), max_size=6),
    st.lists(_WORD_LINE, max_size=8)),
    junk=st.one_of(st.just(b""), st.just(b""), st.binary(max_size=10)))
def test_fuzz_word_list(lines, junk):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "words.txt"
        p.write_bytes("\n".join(lines).encode("utf-8") + junk)
        try:
            words, counts = read_word_list(p)
        except CorpusError as exc:
            event("refused")
            assert_one_line(str(exc), p)
            return
        event("read")
        assert len(words) == len(counts) > 0 and all(1 <= c <= MAX_COUNT for c in counts)
        assert all(w and not any(ch.isspace() for ch in w) for w in words)


# --------------------------------------------------------------------------- scenario TOML

def _sections() -> dict[str, list[str]]:
    cfg = compose.load(None)
    return {f.name: [g.name for g in fields(getattr(cfg, f.name))] for f in fields(cfg)
            if is_dataclass(getattr(cfg, f.name))}


SECTIONS = _sections()
_TOML_VALUE = st.one_of(st.integers(-10**6, 10**6), st.integers(), st.floats(allow_nan=True), st.booleans(),
                        st.text(max_size=10), st.sampled_from(["builtin", "iid", "natural", "rowwise", "sgns", "rdp"]),
                        st.lists(st.integers(0, 5), max_size=3))


@st.composite
def scenario(draw) -> dict:
    out: dict = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "bogus"]), max_size=4, unique=True)):
        keys = SECTIONS.get(section, []) + ["nonsense"]
        out[section] = {k: draw(_TOML_VALUE) for k in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))}
    if draw(st.booleans()):
        out[draw(st.sampled_from(["seed", "name"]))] = draw(_TOML_VALUE)
    return out


def _toml_bytes(tables: dict) -> bytes:
    import tomli_w

    return tomli_w.dumps(tables).encode("utf-8")


_TOML = st.one_of(scenario().map(_toml_bytes), scenario().map(_toml_bytes),
                  st.binary(max_size=40), st.text(max_size=40).map(lambda s: s.encode("utf-8")),
                  st.sampled_from([b"[model\n", b"[model]\ndim = \n", b"x = 1\nx = 2\n", b"\xff\xfe",
                                   b"[privacy.record]\nenabled = 'yes'\n", b"[[model]]\ndim = 3\n"]))


@fuzz(150)
@given(toml=_TOML)
def test_fuzz_scenario_toml(toml):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.toml"
        p.write_bytes(toml)
        try:
            compose.load(p)
            event("valid scenario")
        except ConfigError as exc:
            event("refused")
            assert_one_line(str(exc), p)


@fuzz(50)
@given(toml=_TOML)
def test_fuzz_scenario_toml_through_the_cli(toml, simulate_stops_after_opening):
    """`fedembed simulate --config FILE`: a bad file exits 2 in one line and creates no run directory.
    (A good one gets as far as opening its run directory: the stand-in stops before Ray.)"""
    with tempfile.TemporaryDirectory() as d:
        p, out = Path(d) / "s.toml", Path(d) / "run"
        p.write_bytes(toml)
        rc, err = cli(["simulate", "--config", str(p), "--out", str(out), "--quiet"])
        assert rc == 2 and err.startswith("fedembed: error: ") and err.count("\n") == 1, err
        if "stand-in" not in err:
            assert_one_line(err.rstrip("\n"), p)
            assert not out.exists()


@pytest.fixture(scope="module")
def simulate_stops_after_opening():
    """`fedembed.simulation.simulate` replaced by its first step (opening the run directory)."""
    from fedembed import simulation
    from fedembed.rundir import open_run_dir

    def opened_then_stop(config=None, out="runs/default", *, resume=False, overrides=None, progress=True):
        open_run_dir(Path(out), config, overrides, resume, check=simulation._simulatable)
        raise FedembedError("stand-in: stopped before the federation starts")

    mp = pytest.MonkeyPatch()
    mp.setattr(simulation, "simulate", opened_then_stop)
    yield
    mp.undo()


# --------------------------------------------------------------------------- word2vec text / binary

_WORDS = st.lists(st.sampled_from(["king", "queen", "man", "woman", "cat", "tiger", "café", "日本", "a'b"]),
                  min_size=1, max_size=5, unique=True)


@st.composite
def vectors_file(draw) -> tuple[str, bytes, int]:
    """A good word2vec file, then damaged: (format, bytes, number of words)."""
    words = draw(_WORDS)
    dim = draw(st.integers(1, 4))
    fmt = draw(st.sampled_from(["word2vec-text", "word2vec-binary"]))
    vecs = np.array(draw(st.lists(st.floats(-1e3, 1e3, width=32), min_size=len(words) * dim,
                                  max_size=len(words) * dim)), dtype=np.float32).reshape(len(words), dim)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "v"
        export(words, vecs, p, fmt)
        data = p.read_bytes()
    how = draw(st.sampled_from(["bytes", "bytes", "header", "text-row", "none"]))
    if how == "bytes":
        data = draw(mutated(data))
    elif how == "header":
        numbers = st.tuples(st.integers(-5, 10**12), st.integers(-5, 10**6)).map(lambda t: f"{t[0]} {t[1]}")
        head = draw(st.one_of(numbers,
                              st.text(max_size=12).filter(lambda s: "\n" not in s and "\r" not in s)))
        data = head.encode("utf-8") + b"\n" + data.split(b"\n", 1)[1]
    elif how == "text-row" and fmt == "word2vec-text":
        row = draw(st.sampled_from(["king nan" + " 1" * (dim - 1), "king" + " 1" * dim, "x", "", "  y 1",
                                    "w" + " inf" * dim, "z 1e999" + " 0" * (dim - 1)]))
        data = data + row.encode("utf-8") + b"\n"
    return fmt, data, len(words)


@fuzz(180)
@given(case=vectors_file(), suffix=st.sampled_from([".txt", ".bin", ".vec", ".txt.gz"]))
def test_fuzz_word2vec_files_through_export(case, suffix):
    fmt, data, n = case
    with tempfile.TemporaryDirectory() as d:
        p, out = Path(d) / f"in{suffix}", Path(d) / "out"
        p.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
        out.mkdir()
        rc = assert_refused_or_ok(["export", str(p), str(out / "v.txt")], p)
        event(f"exit {rc}")
        if rc == 0:
            assert listing(out) == ["v.txt"] and len(load_vectors(out / "v.txt")) >= 1
        else:
            assert listing(out) == []  # nothing partial


@fuzz(40)
@given(case=vectors_file())
def test_fuzz_word2vec_files_through_evaluate(case):
    fmt, data, n = case
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "in.vec"
        p.write_bytes(data)
        assert_refused_or_ok(["evaluate", str(p), "--no-analogies"], p)


# --------------------------------------------------------------------------- .npy + .vocab.txt

@fuzz(60)
@given(words=_WORDS, dim=st.integers(1, 3), npy=st.data(), vocab_edit=st.sampled_from(
    ["none", "none", "none", "drop", "add", "dup", "blank", "space", "bytes"]))
def test_fuzz_npy_vectors(words, dim, npy, vocab_edit):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        export(words, np.ones((len(words), dim), dtype=np.float32), root / "v", "npy")
        good = (root / "v.npy").read_bytes()
        (root / "v.npy").write_bytes(npy.draw(st.one_of(st.just(good), mutated(good))))
        vocab = {"none": words, "drop": words[:-1], "add": words + ["extra"], "dup": words + words[:1],
                 "blank": [""] + words[1:], "space": ["two words"] + words[1:], "bytes": words}[vocab_edit]
        (root / "v.vocab.txt").write_text("".join(w + "\n" for w in vocab))
        if vocab_edit == "bytes":
            (root / "v.vocab.txt").write_bytes(npy.draw(mutated((root / "v.vocab.txt").read_bytes())))
        out = root / "out"
        out.mkdir()
        rc, err = cli(["export", str(root / "v.npy"), str(out / "v.bin"), "--format", "word2vec-binary"])
        assert rc in (0, 2) and err.count("\n") == rc // 2, err
        event(f"exit {rc}")
        if rc == 2:
            assert err.startswith("fedembed: error: ") and "Traceback" not in err
            assert str(root / "v.npy") in err or str(root / "v.vocab.txt") in err, err
            assert listing(out) == []


# --------------------------------------------------------------------------- run directories

@fuzz(70)
@given(part=st.sampled_from(["checkpoint.npz", "checkpoint.npz", "vocab.tsv", "config.toml", "report.json"]),
       data=st.data())
def test_fuzz_run_directory(part, data):
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        run.mkdir()
        cfg = compose.load(None, {"model.dim": 3})
        cfg.save(run / "config.toml")
        vocab = Vocabulary(["king", "queen", "man"], np.array([9, 5, 2]))
        vocab.save(run / "vocab.tsv")
        checkpoint.save(run, checkpoint.State(2, models.make(cfg).init_tables(3, 0), vocab.fingerprint()))
        (run / "report.json").write_text('{"quality": {}}')
        (run / part).write_bytes(data.draw(mutated((run / part).read_bytes())))
        out = Path(d) / "out"
        out.mkdir()
        rc, err = cli(["export", str(run), str(out / "v.txt")])
        assert rc in (0, 2), err
        event(f"{part}: exit {rc}")
        if rc == 2:
            assert err.startswith("fedembed: error: ") and err.count("\n") == 1 and str(run) in err, err
            assert listing(out) == []
        if part == "checkpoint.npz":
            try:
                checkpoint.load(run)
            except CheckpointError as exc:
                assert_one_line(str(exc), run / "checkpoint.npz")


# --------------------------------------------------------------------------- client updates

SHAPES = {"in_vectors": (5, 3), "out_vectors": (5, 3)}
_DTYPES = st.sampled_from([np.float32, np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_,
                           np.complex64])


@st.composite
def array(draw, shape: tuple[int, ...], rows: bool = False) -> np.ndarray:
    """Mostly the expected shape and a float dtype; sometimes not; values with NaN, Inf, negatives."""
    if draw(st.integers(0, 4)) == 0:
        shape = tuple(draw(st.lists(st.integers(0, 6), max_size=3)))
    dtype = np.int64 if rows and draw(st.booleans()) else draw(_DTYPES)
    n = int(np.prod(shape)) if shape else 1
    vals = draw(st.lists(st.one_of(st.floats(-4, 4), st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e30]),
                                   st.integers(-3, 8).map(float)), min_size=n, max_size=n))
    with np.errstate(all="ignore"):
        return np.array(vals, dtype=np.float64).astype(dtype).reshape(shape)


@st.composite
def reply(draw) -> tuple:
    from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

    sparse = draw(st.booleans())
    names = draw(st.sampled_from([list(SHAPES), list(SHAPES), ["in_vectors"], [*SHAPES, "extra"]]))
    records: dict = {}
    rows = {}
    for name in names:
        if sparse:
            k = draw(st.integers(0, 5))
            rows[name] = draw(st.one_of(
                st.lists(st.integers(-2, 7), min_size=k, max_size=k).map(lambda r: np.array(r, dtype=np.int64)),
                st.lists(st.integers(0, 4), min_size=k, max_size=k, unique=True)
                .map(lambda r: np.array(r, dtype=np.int64)),
                array((k,), rows=True)))
    for rec, shape_of in (("update", lambda n: (rows[n].size, 3) if sparse else SHAPES.get(n, (5, 3))),
                          ("weights", lambda n: (rows[n].size,) if sparse else (SHAPES.get(n, (5, 3))[0],))):
        if draw(st.integers(0, 15)) == 0:
            continue  # a record left out
        arrays = {}
        for name in names:
            if draw(st.integers(0, 25)) == 0:
                arrays[name] = Array(dtype="float32", shape=(5, 3), stype="numpy.ndarray",
                                     data=draw(st.binary(max_size=40)))  # bytes that are no array
            else:
                arr = draw(array(shape_of(name)))
                if rec == "weights" and draw(st.integers(0, 3)) == 0 and arr.size and arr.dtype.kind == "f":
                    arr = arr.copy()
                    arr.flat[0] = -abs(arr.flat[0]) - 1  # a negative weight
                arrays[name] = Array(np.ascontiguousarray(arr))
        records[rec] = ArrayRecord(arrays)
    if sparse:
        records["rows"] = ArrayRecord({n: Array(np.ascontiguousarray(r)) for n, r in rows.items()})
    metric = draw(st.one_of(st.floats(allow_nan=True), st.integers(-5, 5), st.lists(st.floats(-1, 1), max_size=2)))
    records["metrics"] = MetricRecord({"loss": metric, "examples": 3})
    if draw(st.integers(0, 20)) == 0:
        records["update"] = ConfigRecord({"x": 1})  # the right name, the wrong kind of record
    return RecordDict(records)


def take(content, in_place: bool) -> tuple[Accumulator, dict[str, float]]:
    """The server's path for one reply (fedembed/federation/server.py `take`): parse, check, sum."""
    acc = Accumulator(SHAPES)
    parsed = wire.parse_sparse_reply(content, SHAPES) if in_place else None
    if parsed is not None:
        values, weights, rows, metrics = parsed
        acc.add_rows(values, weights, rows)
    else:
        tables, weights, metrics = wire.parse_reply(content, SHAPES)
        acc.add(tables, weights)
    return acc, metrics


def assert_accepted(acc: Accumulator, metrics: dict[str, float]) -> None:
    assert acc.count == 1 and all(isinstance(v, float) for v in metrics.values())
    for k in SHAPES:
        assert acc.sums[k].shape == SHAPES[k] and np.isfinite(acc.sums[k]).all()
        assert np.isfinite(acc.weights[k]).all() and (acc.weights[k] >= 0).all()


DEFECTS = ["nan", "inf", "negative weight", "nan weight", "int dtype", "bool dtype", "complex dtype", "table shape",
           "weights shape", "missing table", "extra table", "missing record", "record of the wrong kind",
           "bytes that are no array", "metric list", "rows out of range", "negative row", "duplicate rows",
           "float rows", "2-D rows"]


@st.composite
def one_defect_reply(draw) -> tuple:
    """A well-formed reply (dense or sparse, float16/32/64), then at most one defect: (reply, defect)."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

    defect = draw(st.one_of(st.none(), st.sampled_from(DEFECTS)))
    sparse = defect in ("rows out of range", "negative row", "duplicate rows", "float rows", "2-D rows") or \
        draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64, np.float16]))
    rows = {n: np.array(sorted(draw(st.sets(st.integers(0, 4), min_size=2 if defect == "duplicate rows" else 0))),
                        dtype=np.int64) for n in SHAPES}
    tables, weights = {}, {}
    for n, shape in SHAPES.items():
        k = len(rows[n]) if sparse else shape[0]
        tables[n] = np.array(draw(st.lists(st.floats(-4, 4, width=16), min_size=k * 3, max_size=k * 3)),
                             dtype=dtype).reshape(k, 3)
        weights[n] = np.array(draw(st.lists(st.floats(0, 8, width=16), min_size=k, max_size=k)), dtype=dtype)
    n = draw(st.sampled_from(list(SHAPES)))
    metric: object = draw(st.one_of(st.floats(-5, 5), st.just(float("nan"))))
    if defect in ("nan", "inf", "negative weight", "nan weight") and not tables[n].size:
        rows[n] = np.array([0], dtype=np.int64)
        tables[n], weights[n] = np.ones((1, 3), dtype=dtype), np.ones(1, dtype=dtype)
        if not sparse:
            tables[n], weights[n] = np.ones(SHAPES[n], dtype=dtype), np.ones(SHAPES[n][0], dtype=dtype)
    if defect == "nan":
        tables[n].flat[draw(st.integers(0, tables[n].size - 1))] = np.nan
    elif defect == "inf":
        tables[n].flat[draw(st.integers(0, tables[n].size - 1))] = -np.inf
    elif defect == "negative weight":
        weights[n][draw(st.integers(0, weights[n].size - 1))] = -0.5
    elif defect == "nan weight":
        weights[n][draw(st.integers(0, weights[n].size - 1))] = np.nan
    elif defect in ("int dtype", "bool dtype", "complex dtype"):
        target = tables if draw(st.booleans()) else weights
        target[n] = target[n].astype({"int dtype": np.int32, "bool dtype": np.bool_,
                                      "complex dtype": np.complex64}[defect])
    elif defect == "table shape":
        tables[n] = tables[n][:, :2] if draw(st.booleans()) else np.zeros((tables[n].shape[0] + 1, 3), dtype=dtype)
    elif defect == "weights shape":
        weights[n] = np.zeros((weights[n].shape[0], 2), dtype=dtype)
    elif defect == "missing table":
        del (tables if draw(st.booleans()) else weights)[n]
    elif defect == "extra table":
        tables["extra"], weights["extra"] = tables[n].copy(), weights[n].copy()
        rows["extra"] = rows[n].copy()
    elif defect == "rows out of range":
        rows[n] = np.append(rows[n], draw(st.integers(5, 2**40)))
        tables[n], weights[n] = np.zeros((len(rows[n]), 3), dtype=dtype), np.zeros(len(rows[n]), dtype=dtype)
    elif defect == "negative row":
        rows[n] = np.append(rows[n], -1)
        tables[n], weights[n] = np.zeros((len(rows[n]), 3), dtype=dtype), np.zeros(len(rows[n]), dtype=dtype)
    elif defect == "duplicate rows":
        rows[n][1] = rows[n][0]
    elif defect == "float rows":
        rows[n] = rows[n].astype(np.float64)
    elif defect == "2-D rows":
        rows[n] = rows[n].reshape(-1, 1)
    elif defect == "metric list":
        metric = [1.0, 2.0]
    records: dict = {"update": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in tables.items()}),
                     "weights": ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()}),
                     "metrics": MetricRecord({"loss": metric, "examples": 3})}
    if sparse:
        records["rows"] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in rows.items()})
    if defect == "missing record":
        del records[draw(st.sampled_from(["update", "weights"]))]
    elif defect == "record of the wrong kind":
        records["weights"] = ConfigRecord({"x": 1})
    elif defect == "bytes that are no array":
        record = draw(st.sampled_from(["update", "weights", "rows"] if sparse else ["update", "weights"]))
        records[record] = ArrayRecord({k: Array(dtype="float32", shape=(5, 3), stype="numpy.ndarray",
                                                data=draw(st.binary(max_size=40))) for k in SHAPES})
    return RecordDict(records), defect


@fuzz(200)
@given(case=one_defect_reply(), in_place=st.booleans())
def test_fuzz_client_updates(case, in_place):
    """A well-formed reply is summed (finite sums, weights >= 0); one with any single defect is an
    UpdateError, one line, and never touches the sums."""
    content, defect = case
    event(f"defect: {defect}")
    try:
        acc, metrics = take(content, in_place)
    except UpdateError as exc:
        assert_one_line(str(exc))
        assert defect is not None, f"a good reply was refused: {exc}"
        return
    assert defect is None, f"a reply with {defect} was summed"
    assert_accepted(acc, metrics)


@fuzz(120)
@given(content=reply(), in_place=st.booleans())
def test_fuzz_client_updates_anything(content, in_place):
    """Replies drawn freely (shapes, dtypes, values, records): summed or an UpdateError, nothing else."""
    try:
        acc, metrics = take(content, in_place)
    except UpdateError as exc:
        event("refused")
        assert_one_line(str(exc))
        return
    event("summed")
    assert_accepted(acc, metrics)


# --------------------------------------------------------------------------- a few real processes

@pytest.mark.parametrize("content, fragment", [
    (b"99999999999 5\nking 1 2 3 4 5\nqueen \xff 2\n", ":3: not valid UTF-8"),
])
def test_a_real_process_prints_one_line(tmp_path, content, fragment):
    """Outside pytest's capture: exactly one stderr line, no traceback, no log noise, exit 2."""
    p = tmp_path / "v.txt"
    p.write_bytes(content)
    res = subprocess.run([sys.executable, "-m", "fedembed.cli", "evaluate", str(p)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"fedembed: error: {p}{fragment}"), res.stderr
