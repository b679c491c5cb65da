"""Word vectors out: word2vec text/binary (gensim-loadable) and .npy + vocabulary; and back in."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
from gensim.models import KeyedVectors

from fedembed.data.lines import one_line
from fedembed.errors import ConfigError

FORMATS = ("word2vec-text", "word2vec-binary", "npy")


@contextlib.contextmanager
def quiet_gensim() -> Iterator[None]:
    """gensim's KeyedVectors warns about what fedembed does on purpose: vectors without a
    `count` attribute (their order already is the vocabulary's), evaluation pairs out of the
    vocabulary (reported as `oov`). Errors still show."""
    log = logging.getLogger("gensim.models.keyedvectors")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def keyed_vectors(words: list[str], vectors: np.ndarray) -> KeyedVectors:
    kv = KeyedVectors(vectors.shape[1], dtype=np.float32)
    kv.add_vectors(words, np.asarray(vectors, dtype=np.float32))
    return kv


def export(words: list[str], vectors: np.ndarray, path: Path, fmt: str) -> list[Path]:
    """Write the vectors as `fmt`; returns the files written.

    Nothing partial is left behind and nothing is half-replaced: each file is written under a
    temporary name beside its target and renamed into place only once complete; on any
    failure the temporaries (and the folders this call created) are removed. A target that is
    a directory, or a destination that cannot be written, is a `ConfigError` naming it."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    targets = [path.with_suffix(".npy"), path.with_suffix(".vocab.txt")] if fmt == "npy" else [path]
    for target in targets:
        if target.is_dir():
            raise ConfigError(f"cannot export to {target}: it is a directory (give a file path)")
    tmps = [t.with_name(t.name + ".tmp") for t in targets]
    created: list[Path] = []
    try:
        created = _make_parents(path.parent)
        if fmt == "npy":
            with open(tmps[0], "wb") as fh:
                np.save(fh, np.asarray(vectors, dtype=np.float32))
            tmps[1].write_text("".join(w + "\n" for w in words), encoding="utf-8")
        else:
            with quiet_gensim():
                keyed_vectors(words, vectors).save_word2vec_format(str(tmps[0]), binary=fmt == "word2vec-binary")
        for tmp, target in zip(tmps, targets):
            tmp.replace(target)
    except BaseException as exc:
        for tmp in tmps:
            _remove(tmp)
        for d in reversed(created):
            _remove(d)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write {path}: {exc.strerror or one_line(exc)}") from exc
        raise
    return targets


def _make_parents(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns those created, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    for p in missing:
        p.mkdir()
    return missing


def _remove(p: Path) -> None:
    try:
        p.rmdir() if p.is_dir() else p.unlink(missing_ok=True)
    except OSError:
        pass  # a folder someone else filled meanwhile, or a file already gone: keep going


def load_vectors(path: Path) -> KeyedVectors:
    """A word2vec text or binary file, told apart by content, or a .npy with its .vocab.txt
    (fedembed/vector_files.py: bounded memory, a `CorpusError` naming the file and line)."""
    from fedembed.vector_files import read_vectors

    words, vectors = read_vectors(path)
    return keyed_vectors(words, vectors)
