"""Edge lists and node label files: CSV or TSV, weighted or not, read into node ids.

One edge a line: `source<sep>target` or `source<sep>target<sep>weight`, where <sep> is a
comma for `.csv` files and a tab (or, failing that, runs of spaces) otherwise; blank lines and
lines starting with `#` are skipped. Node names are strings ("1" and "01" are two nodes). A
weight must be a positive finite number; without one every edge weighs 1. Directed or not is
the caller's choice (`directed`): an undirected edge list holds each edge once and is walked
both ways.

Every problem stops the read with one line naming the file and line (a `CorpusError`), never
a traceback: a missing column, a bad or non-positive weight, a line mixing weighted and
unweighted edges, an empty file. Self-loops are kept (they are edges).
Lines are read through fedembed.data.lines, so a runaway line is refused, not held whole.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedembed.data.lines import opener, text_lines
from fedembed.errors import CorpusError

_SPACES = re.compile(r"[ \t]+")


@dataclass
class EdgeList:
    """Edges as node ids into `names`; `weights` is all ones for an unweighted file."""
    names: list[str]
    src: np.ndarray          # [E] int64
    dst: np.ndarray          # [E] int64
    weights: np.ndarray      # [E] float64
    weighted: bool
    directed: bool
    index: dict[str, int] = field(repr=False, default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.src)


def split_fields(line: str, path: Path) -> list[str]:
    """A line's fields: commas in a .csv file, else tabs, else runs of spaces."""
    if _is_csv(path):
        return [f.strip() for f in line.split(",")]
    if "\t" in line:
        return [f.strip() for f in line.split("\t")]
    return _SPACES.split(line.strip())


def _weight(text: str, path: Path, lineno: int) -> float:
    try:
        w = float(text)
    except ValueError:
        raise CorpusError(f"{path}:{lineno}: weight {text!r} is not a number") from None
    if not math.isfinite(w) or w <= 0:
        raise CorpusError(f"{path}:{lineno}: weight {text!r} must be a positive finite number")
    return w


def read_edges(path: str | Path, directed: bool = False, names: dict[str, int] | None = None) -> EdgeList:
    """Read an edge list; `names` (node name → id) fixes ids beforehand and grows with new nodes."""
    path = Path(path)
    index: dict[str, int] = dict(names or {})
    src: list[int] = []
    dst: list[int] = []
    wts: list[float] = []
    weighted: bool | None = None
    try:
        fh = opener(path)(path, "rb")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot open ({exc.strerror or exc})") from None
    with fh:
        for lineno, line in text_lines(fh, path):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = split_fields(line, path)
            if len(fields) not in (2, 3) or not all(fields[:2]):
                raise CorpusError(f"{path}:{lineno}: expected 'source{_sep(path)}target[{_sep(path)}weight]', "
                                  f"got {len(fields)} field(s)")
            has_w = len(fields) == 3
            if weighted is None:
                weighted = has_w
            elif has_w != weighted:
                raise CorpusError(f"{path}:{lineno}: {'a weight' if has_w else 'no weight'} here, but the file's "
                                  f"first edge {'has none' if has_w else 'has one'}: give every edge a weight or none")
            s, d = (index.setdefault(f, len(index)) for f in fields[:2])
            src.append(s)
            dst.append(d)
            wts.append(_weight(fields[2], path, lineno) if has_w else 1.0)
    if not src:
        raise CorpusError(f"{path}: no edges (an empty file, or only comments)")
    names_list = [""] * len(index)
    for n, i in index.items():
        names_list[i] = n
    return EdgeList(names_list, np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64),
                    np.array(wts, dtype=np.float64), bool(weighted), directed, index)


def _is_csv(path: Path) -> bool:
    """`x.csv`, `x.csv.gz`, `x.csv.bz2`."""
    return ".csv" in [s.lower() for s in path.suffixes]


def _sep(path: Path) -> str:
    return "," if _is_csv(path) else "<TAB>"


def read_node_table(path: str | Path, index: dict[str, int], what: str = "label") -> dict[int, str]:
    """`node<sep>value` per line (labels, or owners: which client holds a node), for known nodes.

    A node the edge list does not name is an error (a typo in one of the two files would
    otherwise silently drop it), and so is a node given twice."""
    path = Path(path)
    out: dict[int, str] = {}
    try:
        fh = opener(path)(path, "rb")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot open ({exc.strerror or exc})") from None
    with fh:
        for lineno, line in text_lines(fh, path):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = split_fields(line, path)
            if len(fields) != 2 or not all(fields):
                raise CorpusError(f"{path}:{lineno}: expected 'node{_sep(path)}{what}', got {len(fields)} field(s)")
            node = index.get(fields[0])
            if node is None:
                raise CorpusError(f"{path}:{lineno}: node {fields[0]!r} is not in the edge list")
            if node in out:
                raise CorpusError(f"{path}:{lineno}: node {fields[0]!r} is given a {what} twice")
            out[node] = fields[1]
    if not out:
        raise CorpusError(f"{path}: no {what}s (an empty file, or only comments)")
    return out
