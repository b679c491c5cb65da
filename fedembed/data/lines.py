"""Bounded line reading for every line-oriented input: corpus text (plain, gzip, bz2, each file
of a directory), JSON Lines, word lists and word2vec text vectors.

Why a bound: a reader that asks for "the next line" holds the whole line, so a file without
line breaks (a 200 MB dump, a binary file past the sniffed head) would be held whole, then
copied by decoding, normalisation and tokenizing: gigabytes. Every line here is read with a
limit of `MAX_LINE_BYTES`, so memory stays bounded whatever the input.

Why refuse an over-long line rather than split it: a line is a unit downstream. It is a
sentence (record-level DP's `sentence` unit: splitting would silently turn one record into
several, and weaken what the guarantee covers), a JSON Lines record (a cut record no longer
parses), a word-list entry or a vector row. The error names the file and line, so the user
can break the text where it makes sense (JSON Lines: several records with the same
`client_id` make one document).

Lines are decoded here, one at a time, so a decoding error names its own line exactly, and
line breaks are Python's universal newlines (`\\n`, `\\r\\n` and a lone `\\r`), as a text-mode
file would read them.
"""
from __future__ import annotations

import bz2
import gzip
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from fedembed.errors import CorpusError, one_line  # noqa: F401  (re-exported)

MAX_LINE_BYTES = 4 * 1024 * 1024  # 4 MiB: a long book on one line, far less than a runaway file

# What reading a compressed or damaged file can raise mid-stream (a truncated gzip: EOFError;
# corrupt deflate data: zlib.error; bad bz2 data or a device error: OSError).
READ_ERRORS = (OSError, EOFError, zlib.error)


def opener(path: Path) -> Callable[..., BinaryIO]:
    """`open`, or gzip's / bz2's by the file's last suffix (`.gz`, `.bz2`)."""
    return {".gz": gzip.open, ".bz2": bz2.open}.get(Path(path).suffix.lower(), open)  # type: ignore[return-value]


def too_long(name: object, lineno: int, limit: int = MAX_LINE_BYTES) -> CorpusError:
    return CorpusError(f"{name}:{lineno}: line longer than {limit} bytes (a file without line breaks?); "
                       f"break it into shorter lines")


def raw_lines(fh: BinaryIO, name: object, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, the line's bytes with its `\\n`) of a binary file, each at most
    `limit` bytes before its line break; a longer one is refused before more of it is read."""
    lineno = 0
    while True:
        try:
            line = fh.readline(limit + 1)
        except READ_ERRORS as exc:
            raise CorpusError(f"{name}:{lineno + 1}: cannot read ({one_line(exc)})") from exc
        if not line:
            return
        lineno += 1
        if len(line) > limit and not (len(line) == limit + 1 and line.endswith(b"\n")):
            raise too_long(name, lineno, limit)
        yield lineno, line


def text_lines(fh: BinaryIO, name: object, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """(line number, line without its line break) of UTF-8 text: strict decoding, a leading BOM
    dropped, universal newlines (a lone `\\r` ends a line, as in text mode)."""
    lineno = 0
    for _, raw in raw_lines(fh, name, limit):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = raw[:exc.start]  # lone `\r`s before the bad byte end lines of their own
            bad_line = lineno + 1 + before.count(b"\r") - before.count(b"\r\n")
            raise CorpusError(f"{name}:{bad_line}: not valid UTF-8 ({exc.reason})") from exc
        if lineno == 0 and line.startswith("\ufeff"):
            line = line[1:]
        line = line.removesuffix("\n").removesuffix("\r")
        for piece in line.split("\r") if "\r" in line else (line,):
            lineno += 1
            yield lineno, piece
