"""Interaction files: (user, item, rating[, timestamp]) in the common formats, one clear line per error.

`data.format` (auto picks by the file's name):
  udata   MovieLens 100K `u.data`: user, item, rating, timestamp separated by tabs (auto: `*.data`)
  csv     `ratings.csv`: user,item,rating[,timestamp]; a first line that is a header is skipped (auto: `*.csv`)
  tsv     the same separated by tabs (auto: `*.tsv`)
  jsonl   JSON Lines: {"user": ..., "item": ..., "rating": ..., "timestamp": ...}; `rating` defaults to 1
          (implicit feedback), `timestamp` is optional (auto: `*.jsonl`)
  debian  Debian package indexes (`Packages` files, as `apt-get update` leaves them under
          /var/lib/apt/lists, plain or .lz4/.gz/.xz): each package is a user, each package named
          in its Depends or Pre-Depends an item it interacted with (rating 1) (auto: a name holding
          `Packages`, or a directory of them)

A path may be a file or a directory (its files in name order, of one format). Bad input stops
with `file:line: what is wrong`; lines are bounded as everywhere (fedembed/data/lines.py).
"""
from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fedembed.data.lines import opener, text_lines
from fedembed.errors import CorpusError

FORMATS = ("udata", "csv", "tsv", "jsonl", "debian")
_FIELD = re.compile(r"^[^\s\x00-\x1f]{1,200}$")   # ids: no whitespace or control characters (vocab.tsv rows)


@dataclass(frozen=True)
class Interaction:
    user: str
    item: str
    rating: float
    timestamp: float | None
    origin: str            # file name


def detect(path: Path) -> str:
    """The format of `path` by its name (a directory: by its first file's)."""
    if path.is_dir():
        files = _files(path)
        if not files:
            raise CorpusError(f"{path}: the directory holds no file")
        if any("packages" in f.name.lower() for f in files):
            return "debian"       # e.g. /var/lib/apt/lists, beside its InRelease and Translation files
        path = files[0]
    name = path.name.lower()
    if "packages" in name:
        return "debian"
    for suffix, fmt in ((".data", "udata"), (".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl")):
        if name.endswith(suffix) or name.endswith(suffix + ".gz") or name.endswith(suffix + ".bz2"):
            return fmt
    raise CorpusError(f"{path}: cannot tell the ratings format from the name; set data.format to one of "
                      f"{', '.join(FORMATS)}")


def _files(path: Path) -> list[Path]:
    return sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))


def read(path: str | Path, fmt: str = "auto") -> Iterator[Interaction]:
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"ratings file does not exist: {path}")
    fmt = detect(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise CorpusError(f"{path}: data.format {fmt!r} is not a ratings format ({', '.join(FORMATS)})")
    files = _files(path) if path.is_dir() else [path]
    if fmt == "debian" and path.is_dir():
        files = [f for f in files if "packages" in f.name.lower()]
    for f in files:
        if fmt == "debian":
            yield from _debian(f)
        elif fmt == "jsonl":
            yield from _jsonl(f)
        else:
            yield from _delimited(f, "," if fmt == "csv" else "\t", header_ok=fmt != "udata")


def _id(value: object, f: Path, lineno: int, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CorpusError(f"{f}:{lineno}: {field} must be a string or an integer, got {json.dumps(value)[:40]}")
    text = str(value).strip()
    if not _FIELD.match(text):
        raise CorpusError(f"{f}:{lineno}: {field} {text[:40]!r} is empty or holds whitespace or control characters")
    return text


def _number(text: object, f: Path, lineno: int, field: str, *, optional: bool = False) -> float | None:
    if text is None or text == "":
        if optional:
            return None
        raise CorpusError(f"{f}:{lineno}: {field} is missing")
    if isinstance(text, bool):
        raise CorpusError(f"{f}:{lineno}: {field} must be a number, got {text!r}")
    try:
        x = float(text)
    except (TypeError, ValueError):
        raise CorpusError(f"{f}:{lineno}: {field} {str(text)[:40]!r} is not a number") from None
    if not math.isfinite(x):
        raise CorpusError(f"{f}:{lineno}: {field} {str(text)[:40]!r} is not finite")
    return x


def _lines(f: Path) -> Iterator[tuple[int, str]]:
    with opener(f)(f, "rb") as fh:
        yield from text_lines(fh, f)


def _delimited(f: Path, sep: str, header_ok: bool) -> Iterator[Interaction]:
    for lineno, line in _lines(f):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(sep)]
        if len(parts) not in (3, 4):
            raise CorpusError(f"{f}:{lineno}: expected user{sep}item{sep}rating[{sep}timestamp], "
                              f"got {len(parts)} field(s)")
        if lineno == 1 and header_ok and _is_header(parts[2]):
            continue
        yield Interaction(_id(parts[0], f, lineno, "user"), _id(parts[1], f, lineno, "item"),
                          _number(parts[2], f, lineno, "rating"),
                          _number(parts[3], f, lineno, "timestamp") if len(parts) == 4 else None, f.name)


def _is_header(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return True
    return False


def _jsonl(f: Path) -> Iterator[Interaction]:
    for lineno, line in _lines(f):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise CorpusError(f"{f}:{lineno}: not valid JSON ({str(exc).splitlines()[0][:80]})") from None
        if not isinstance(rec, dict):
            raise CorpusError(f"{f}:{lineno}: expected a JSON object with user and item")
        for key in ("user", "item"):
            if key not in rec:
                raise CorpusError(f"{f}:{lineno}: the record has no {key!r}")
        rating = _number(rec.get("rating", 1.0), f, lineno, "rating")
        yield Interaction(_id(rec["user"], f, lineno, "user"), _id(rec["item"], f, lineno, "item"), rating,
                          _number(rec.get("timestamp"), f, lineno, "timestamp", optional=True), f.name)


_DEP_FIELDS = ("depends", "pre-depends")
_PKG = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9+.\-]*)")


def _debian_lines(f: Path) -> Iterator[tuple[int, str]]:
    """A Packages file's lines; `.lz4` (apt's default on Debian 12+) through the lz4 tool."""
    if f.suffix.lower() != ".lz4":
        yield from _lines(f)
        return
    try:
        proc = subprocess.Popen(["lz4cat", str(f)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError as exc:
        raise CorpusError(f"{f}: cannot decompress (.lz4 needs the lz4 tool: apt-get install lz4): {exc}") from exc
    try:
        yield from text_lines(proc.stdout, f)
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise CorpusError(f"{f}: lz4cat could not decompress it")


def _with_end(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield from lines
    yield -1, ""   # the last stanza ends with the file


def _debian(f: Path) -> Iterator[Interaction]:
    """deb822 stanzas: Package: names the user; Depends / Pre-Depends list its items (alternatives
    `a | b` count their first, version constraints and architecture qualifiers dropped)."""
    package, start, deps = None, 0, []
    for lineno, line in _with_end(_debian_lines(f)):
        if not line.strip():
            if package is not None:
                for item in dict.fromkeys(deps):
                    if item != package:
                        yield Interaction(package, item, 1.0, None, f.name)
            elif deps:
                raise CorpusError(f"{f}:{start}: a stanza with Depends but no Package field")
            package, deps, start = None, [], lineno + 1
            continue
        if line[0] in " \t":  # a continuation line (long descriptions)
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise CorpusError(f"{f}:{lineno}: expected 'Field: value' in a Packages file")
        key = key.strip().lower()
        if key == "package":
            package, start = _id(value, f, lineno, "Package"), lineno
        elif key in _DEP_FIELDS:
            for alt in value.split(","):
                m = _PKG.match(alt.split("|")[0])
                if m:
                    deps.append(m.group(1).split(":")[0])
