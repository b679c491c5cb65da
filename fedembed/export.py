"""Word vectors out: word2vec text/binary (gensim-loadable) and .npy + vocabulary."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
from gensim.models import KeyedVectors

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
    kv.add_vectors(words, vectors.astype(np.float32))
    return kv


def export(words: list[str], vectors: np.ndarray, path: Path, fmt: str) -> list[Path]:
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        npy, vocab = path.with_suffix(".npy"), path.with_suffix(".vocab.txt")
        np.save(npy, vectors.astype(np.float32))
        vocab.write_text("".join(w + "\n" for w in words), encoding="utf-8")
        return [npy, vocab]
    tmp = path.with_name(path.name + ".tmp")
    with quiet_gensim():
        keyed_vectors(words, vectors).save_word2vec_format(str(tmp), binary=fmt == "word2vec-binary")
    tmp.replace(path)
    return [path]


def load_vectors(path: Path) -> KeyedVectors:
    """A word2vec text or binary file, told apart by content, or a .npy with its .vocab.txt."""
    path = Path(path)
    if path.suffix == ".npy":
        words = path.with_suffix(".vocab.txt").read_text(encoding="utf-8").splitlines()
        return keyed_vectors(words, np.load(path))
    if path.suffix == ".bin":
        return KeyedVectors.load_word2vec_format(str(path), binary=True)
    try:
        return KeyedVectors.load_word2vec_format(str(path), binary=False)
    except (UnicodeDecodeError, ValueError):
        return KeyedVectors.load_word2vec_format(str(path), binary=True)
