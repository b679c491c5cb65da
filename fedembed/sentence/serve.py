"""Serving a sentence-encoder run: texts → vectors with the run's fine-tuned part.

Reads the run's scenario (config.toml: which base model, which part) and its exported part
(sentence_part.npz), so `fedembed serve RUN_DIR` embeds text exactly as the report evaluated it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from fedembed.errors import FedembedError

PART_FILE = "sentence_part.npz"
CORPUS_FILE, CORPUS_TEXT = "sentences.npy", "sentences.txt"


def save_corpus(run_dir: Path, texts: list[str], vectors: np.ndarray) -> list[Path]:
    """The served corpus: vectors [n, D] and the n sentences, one a line (no line breaks inside)."""
    vec, txt = Path(run_dir) / CORPUS_FILE, Path(run_dir) / CORPUS_TEXT
    np.save(vec.with_name(vec.stem + ".tmp.npy"), np.asarray(vectors, np.float32))
    vec.with_name(vec.stem + ".tmp.npy").replace(vec)
    txt.write_text("".join(" ".join(t.split()) + "\n" for t in texts), encoding="utf-8")
    return [vec, txt]


def load_corpus(run_dir: Path) -> tuple[list[str], np.ndarray]:
    """The corpus save_corpus wrote; a damaged or inconsistent one is one error naming the file."""
    from fedembed.data.lines import text_lines

    vec, txt = Path(run_dir) / CORPUS_FILE, Path(run_dir) / CORPUS_TEXT
    for p in (vec, txt):
        if not p.is_file():
            raise FedembedError(f"{run_dir} has no {p.name} (a sentence run writes it when it reports)")
    try:
        vectors = np.load(vec, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise FedembedError(f"{vec}: not a readable .npy array ({exc})") from exc
    with open(txt, "rb") as fh:
        texts = [t for _, t in text_lines(fh, txt)]
    if vectors.ndim != 2 or len(texts) != len(vectors):
        raise FedembedError(f"{txt} has {len(texts)} sentences but {vec} holds an array of shape {vectors.shape}")
    return texts, vectors


def load_part(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k != "__meta__"}
    except (OSError, ValueError) as exc:
        raise FedembedError(f"{path}: not a readable sentence part ({exc})") from exc


def text_embedder(run_dir: Path) -> Callable[[list[str]], np.ndarray]:
    """texts → [n, D] unit vectors under the run's model."""
    # the scenario's [sentence] keys and the sentence package alone: serving needs neither the
    # family registry nor the composition root (which would import the federation back)
    from fedembed import config
    from fedembed.sentence.contrastive import Features, embed
    from fedembed.sentence.keys import check
    from fedembed.sentence.runtime import model_for
    from fedembed.sentence.trainable import table_name

    cfg = config.load(run_dir / "config.toml", validate=lambda c: (check(c), c)[1])
    part = run_dir / PART_FILE
    if not part.is_file():
        raise FedembedError(f"{run_dir} has no {PART_FILE} (run `fedembed export {run_dir} {part} "
                            f"--format sentence-npz`)")
    tables = load_part(part)
    model, tok = model_for(cfg)
    missing = [table_name(k) for k in model.trainable() if table_name(k) not in tables]
    if missing:
        raise FedembedError(f"{part} has no table {missing[0]!r} (sentence.trainable = {cfg.sentence.trainable!r})")
    model.load_tables({k: tables[table_name(k)] for k in model.trainable()})

    def embed_texts(texts: list[str]) -> np.ndarray:
        return embed(model, Features(model, tok, texts))
    return embed_texts
