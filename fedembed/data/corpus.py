"""Stream documents from text files, directories, JSON Lines or the built-in corpus.

Everything is a generator over `Document`s: a multi-GB corpus is read line by line and
never held whole. Each document carries its natural unit (the file, the JSONL
`client_id`, or the built-in article) so the natural partitioner can keep units whole,
and its origin (file and line) so errors can name where they come from.
"""
from __future__ import annotations

import bz2
import functools
import gzip
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

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


def _opener(path: Path):
    return {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix.lower(), open)


def _open_text(path: Path) -> IO[str]:
    """Open a (possibly gzip/bz2-compressed) UTF-8 file, refusing binary content early."""
    try:
        raw = _opener(path)(path, "rb")
        head = raw.read(_SNIFF_BYTES)
    except OSError as exc:
        raise CorpusError(f"cannot read corpus file {path}: {exc}") from exc
    if b"\x00" in head:
        raw.close()
        raise CorpusError(f"{path} looks binary (NUL bytes in its first {_SNIFF_BYTES} bytes), not UTF-8 text")
    raw.seek(0)
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline=None)  # -sig: skip a BOM


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with _open_text(path) as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):
                yield lineno, line
        except UnicodeDecodeError as exc:
            # The text layer decodes whole chunks ahead of the line being read: find the line.
            raise CorpusError(f"{path}:{_undecodable_line(path, lineno + 1)}: not valid UTF-8 ({exc.reason})") from exc


def _undecodable_line(path: Path, default: int) -> int:
    """1-based number of the first line that is not valid UTF-8 ('\\n' never occurs inside a UTF-8 sequence)."""
    with _opener(path)(path, "rb") as raw:
        for lineno, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return default


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
    p = Path(path)
    for lineno, line in _lines(p):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{p}:{lineno}: invalid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or "text" not in obj:
            raise CorpusError(f"{p}:{lineno}: JSON Lines record has no 'text' field")
        if not isinstance(obj["text"], str):
            raise CorpusError(f"{p}:{lineno}: 'text' must be a string, got {type(obj['text']).__name__}")
        unit = str(obj["client_id"]) if obj.get("client_id") is not None else p.name
        tokens = tokenize(obj["text"])
        if tokens:
            yield Document(unit, f"{p}:{lineno}", tokens)


def _read_builtin(_: str | os.PathLike[str] = BUILTIN) -> Iterator[Document]:
    # Small (≈0.5M tokens) and fixed, but WikiCorpus parses the XML slowly: parse once per process.
    return iter(_builtin_documents())


def preload_builtin() -> None:
    """Parse the built-in corpus now; this process' later reads of it come from memory.

    For a caller about to install signal handlers that forked workers would inherit
    (WikiCorpus forks its parser's workers): parsed first, they are forked without them."""
    _builtin_documents()


@functools.lru_cache(maxsize=1)
def _builtin_documents() -> tuple[Document, ...]:
    with default_signal_handlers():  # WikiCorpus forks workers and ends them with SIGTERM
        return tuple(_parse_builtin())


def _parse_builtin() -> Iterator[Document]:
    from gensim.corpora import WikiCorpus

    paths = builtin_paths()
    for lineno, line in _lines(paths["lee"]):
        tokens = tokenize(line)
        if tokens:
            yield Document(f"lee/{lineno}", f"{paths['lee']}:{lineno}", tokens)
    wiki = WikiCorpus(str(paths["wiki"]), dictionary={}, metadata=True, processes=1,
                      tokenizer_func=wiki_tokenizer, article_min_tokens=10)
    for tokens, (pageid, title) in wiki.get_texts():
        if tokens:
            yield Document(f"wiki/{title}", f"{paths['wiki']}#page={pageid}", list(tokens))
