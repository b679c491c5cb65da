"""Stream documents from text files, directories, JSON Lines or the built-in corpus.

Everything is a generator over `Document`s: a multi-GB corpus is read line by line and
never held whole. Each document carries its natural unit (the file, the JSONL
`client_id`, or the built-in article) so the natural partitioner can keep units whole,
and its origin (file and line) so errors can name where they come from.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from fedembed.data.lines import READ_ERRORS, one_line, opener, text_lines
from fedembed.data.tokenize import tokenize, wiki_tokenizer
from fedembed.errors import CorpusError
from fedembed.signals import default_signal_handlers

BUILTIN = "builtin"
_SNIFF_BYTES = 8192
_TEXT_SUFFIXES = {".jsonl", ".ndjson"}


@dataclass(frozen=True)
class Document:
    unit: str
    origin: str
    tokens: list[str]


def builtin_paths() -> dict[str, Path]:
    """Real English text gensim installs: the Lee news corpus and a Wikipedia sample."""
    from gensim.test.utils import datapath

    return {
        "lee": Path(datapath("lee_background.cor")),
        "wiki": Path(datapath("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")),
    }


def detect_format(path: str | os.PathLike[str]) -> str:
    if str(path) == BUILTIN:
        return BUILTIN
    p = Path(path)
    if not p.exists():
        raise CorpusError(f"corpus path does not exist: {p}")
    if p.is_dir():
        return "dir"
    suffixes = [s.lower() for s in p.suffixes]
    if any(s in _TEXT_SUFFIXES for s in suffixes):
        return "jsonl"
    return "text"


def read_corpus(path: str | os.PathLike[str], fmt: str = "auto") -> Iterator[Document]:
    """Yield the documents of a corpus; `fmt` is auto, text, dir, jsonl or builtin."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    readers = {"text": _read_text, "dir": _read_dir, "jsonl": _read_jsonl, BUILTIN: _read_builtin}
    if fmt not in readers:
        raise CorpusError(f"unknown corpus format {fmt!r}; expected one of {sorted(readers)}")
    if fmt != BUILTIN and not Path(path).exists():
        raise CorpusError(f"corpus path does not exist: {path}")
    yielded = False
    for doc in readers[fmt](path):
        yielded = True
        yield doc
    if not yielded:
        raise CorpusError(f"corpus {path} is empty: no line has a word token")


def _open_binary(path: Path) -> BinaryIO:
    """Open a (possibly gzip/bz2-compressed) file for bounded line reading, refusing binary content early."""
    try:
        raw = opener(path)(path, "rb")
    except OSError as exc:
        raise CorpusError(f"cannot read corpus file {path}: {one_line(exc)}") from exc
    try:
        head = raw.read(_SNIFF_BYTES)
        raw.seek(0)
    except READ_ERRORS as exc:
        raw.close()
        raise CorpusError(f"cannot read corpus file {path}: {one_line(exc)}") from exc
    if b"\x00" in head:
        raw.close()
        raise CorpusError(f"{path} looks binary (NUL bytes in its first {_SNIFF_BYTES} bytes), not UTF-8 text")
    return raw


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file, a line at most `MAX_LINE_BYTES` long
    (fedembed/data/lines.py: why a longer one is refused, not split)."""
    with _open_binary(path) as fh:
        yield from text_lines(fh, path)


def _read_text(path: str | os.PathLike[str], unit: str | None = None) -> Iterator[Document]:
    p = Path(path)
    unit = unit or p.name
    for lineno, line in _lines(p):
        tokens = tokenize(line)
        if tokens:
            yield Document(unit, f"{p}:{lineno}", tokens)


def _read_dir(path: str | os.PathLike[str]) -> Iterator[Document]:
    root = Path(path)
    files = sorted(f for f in root.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts))
    if not files:
        raise CorpusError(f"corpus directory {root} holds no files")
    for f in files:
        yield from _read_text(f, unit=str(f.relative_to(root)))


def _read_jsonl(path: str | os.PathLike[str]) -> Iterator[Document]:
    """One record per line: `text` (a string) and `client_id`, the record's natural unit.

    `client_id` rule: a string (not blank) or an integer, which is stringified (so `7` and
    `"7"` are the same client). Null, NaN, other numbers, booleans, arrays and objects are
    refused with the file and line: each is a data bug (a pandas NaN, a float id that would
    split `7` from `7.0`), not an id. A file gives every record a `client_id` or none (then
    the file is one unit, as a text file is): a record without one among records with one
    would otherwise be grouped silently under the file name."""
    p = Path(path)
    first: tuple[int, bool] | None = None  # (line, has client_id) of the file's first record
    for lineno, line in _lines(p):
        if not line.strip():
            continue
        obj = _json_record(p, lineno, line)
        has_id = "client_id" in obj
        if first is None:
            first = (lineno, has_id)
        elif has_id != first[1]:
            what = "has no 'client_id', but line {} has one" if not has_id else \
                "has a 'client_id', but line {} has none"
            raise CorpusError(f"{p}:{lineno}: record {what.format(first[0])}; "
                              f"give every record a client_id or none (then the file is one unit)")
        unit = client_id(obj["client_id"], f"{p}:{lineno}") if has_id else p.name
        tokens = tokenize(obj["text"])
        if tokens:
            yield Document(unit, f"{p}:{lineno}", tokens)


def _json_record(p: Path, lineno: int, line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{p}:{lineno}: invalid JSON ({exc.msg})") from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise CorpusError(f"{p}:{lineno}: invalid JSON ({one_line(exc)})") from exc
    except RecursionError as exc:
        raise CorpusError(f"{p}:{lineno}: invalid JSON (nested too deeply)") from exc
    if not isinstance(obj, dict) or "text" not in obj:
        raise CorpusError(f"{p}:{lineno}: JSON Lines record has no 'text' field")
    if not isinstance(obj["text"], str):
        raise CorpusError(f"{p}:{lineno}: 'text' must be a string, got {type(obj['text']).__name__}")
    return obj


def client_id(value: object, where: str) -> str:
    """A JSON Lines `client_id` as a unit name (see `_read_jsonl` for the rule)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CorpusError(f"{where}: 'client_id' is not valid Unicode (a lone surrogate escape)") from None
        return value
    got = "a blank string" if isinstance(value, str) else _json_type(value)
    raise CorpusError(f"{where}: 'client_id' must be a non-blank string or an integer, got {got}")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, float):
        return "NaN" if value != value else f"number {value!r}"
    return {dict: "object", list: "array", str: "string", int: "integer"}.get(type(value), type(value).__name__)


def _read_builtin(_: str | os.PathLike[str] = BUILTIN) -> Iterator[Document]:
    # Small (≈0.5M tokens) and fixed, but WikiCorpus parses the XML slowly: parse once per process.
    return iter(_builtin_documents())


def uses_builtin(cfg) -> bool:
    """Whether a scenario reads the built-in corpus (its data or its public vocabulary)."""
    return BUILTIN in (cfg.data.corpus, cfg.data.format, cfg.vocab.source)


def preload_builtin() -> None:
    """Parse the built-in corpus now; this process' later reads of it come from memory.

    The entry points call it before Flower or Ray start anything (fedembed simulate, the
    ServerApp of `flwr run`), so the seconds of parsing are spent up front, once."""
    _builtin_documents()


@functools.lru_cache(maxsize=1)
def _builtin_documents() -> tuple[Document, ...]:
    with default_signal_handlers():  # belt and braces: nothing below forks any more
        return tuple(_parse_builtin())


WIKI_MIN_TOKENS = 10   # WikiCorpus' article_min_tokens as the built-in corpus was first parsed with


def _parse_builtin() -> Iterator[Document]:
    paths = builtin_paths()
    for lineno, line in _lines(paths["lee"]):
        tokens = tokenize(line)
        if tokens:
            yield Document(f"lee/{lineno}", f"{paths['lee']}:{lineno}", tokens)
    for tokens, pageid, title in _wiki_articles(paths["wiki"]):
        yield Document(f"wiki/{title}", f"{paths['wiki']}#page={pageid}", tokens)


def _wiki_articles(path: Path) -> Iterator[tuple[list[str], str, str]]:
    """What `WikiCorpus(path, metadata=True, tokenizer_func=wiki_tokenizer, article_min_tokens=10).get_texts()`
    yields, article for article, but parsed in this process.

    WikiCorpus parses in a multiprocessing Pool (and prepares chunks in another forked process)
    even with processes=1, and ends its workers with SIGTERM. A worker forked from a process that
    already runs Ray, or Flower's SuperExec task code, inherits their SIGTERM handlers: under
    `flwr run` the ServerApp runs in a thread of the simulation process, so the handlers cannot be
    reset around the fork, and a worker's SIGTERM ran Ray's and Flower's exit paths and ended the
    run as "failed" with nothing in `flwr log`. Nothing here forks."""
    import bz2

    from gensim.corpora.wikicorpus import IGNORED_NAMESPACES, TOKEN_MAX_LEN, TOKEN_MIN_LEN, extract_pages, \
        process_article

    with bz2.BZ2File(path) as f:
        for title, text, pageid in extract_pages(f, ("0",)):
            tokens, title, pageid = process_article((text, title, pageid), wiki_tokenizer, TOKEN_MIN_LEN,
                                                    TOKEN_MAX_LEN, True)
            if len(tokens) < WIKI_MIN_TOKENS or any(title.startswith(ns + ":") for ns in IGNORED_NAMESPACES):
                continue
            if tokens:
                yield list(tokens), pageid, title
