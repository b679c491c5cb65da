"""Text pairs for the sentence encoder: JSON Lines of {"anchor", "positive"[, "client_id"]}.

An anchor and its positive are two texts meant to land close (a package's short and long
description; a question and its answer). `client_id` follows the corpus reader's rule
(README, "JSON Lines client_id"): a non-blank string or an integer, given on every record or
on none. Every problem is one error naming the file and line; lines are read bounded
(fedembed.data.lines).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fedembed.data.lines import opener, text_lines
from fedembed.errors import CorpusError


@dataclass
class Pairs:
    anchors: list[str]
    positives: list[str]
    clients: list[str] | None      # one per pair, or None when the file names no clients

    def __len__(self) -> int:
        return len(self.anchors)

    def subset(self, idx) -> Pairs:
        idx = list(idx)
        return Pairs([self.anchors[i] for i in idx], [self.positives[i] for i in idx],
                     None if self.clients is None else [self.clients[i] for i in idx])


def _client(value: object, path: Path, lineno: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
        raise CorpusError(f"{path}:{lineno}: client_id must be a non-blank string or an integer, got {value!r}")
    return str(value)


def read_pairs(path: str | Path) -> Pairs:
    path = Path(path)
    anchors: list[str] = []
    positives: list[str] = []
    clients: list[str] = []
    named: bool | None = None
    try:
        fh = opener(path)(path, "rb")
    except OSError as exc:
        raise CorpusError(f"{path}: cannot open ({exc.strerror or exc})") from None
    with fh:
        for lineno, line in text_lines(fh, path):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise CorpusError(f"{path}:{lineno}: expected an object with 'anchor' and 'positive'")
            for key in ("anchor", "positive"):
                if not isinstance(rec.get(key), str) or not rec[key].strip():
                    raise CorpusError(f"{path}:{lineno}: '{key}' must be a non-blank string")
            has = "client_id" in rec
            if named is None:
                named = has
            elif has != named:
                raise CorpusError(f"{path}:{lineno}: give every record a client_id or none "
                                  f"(the first record {'has' if named else 'has none'})")
            anchors.append(rec["anchor"])
            positives.append(rec["positive"])
            if has:
                clients.append(_client(rec["client_id"], path, lineno))
    if not anchors:
        raise CorpusError(f"{path}: no pairs")
    return Pairs(anchors, positives, clients if named else None)
