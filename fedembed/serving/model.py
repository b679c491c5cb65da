"""What a server serves: one run's vectors in an index, plus the facts `Info` reports.

Reads the run directory's exported vectors (embeddings.fasttext.bin, else embeddings.bin, else
embeddings.txt) and its report.json, not the training checkpoint, so serving needs no model code
and a run can be served as soon as it has been exported. A bare word2vec/.npy file, or a fastText
.bin (whose n-grams give unseen words vectors), can be served too.
"""
from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fedembed.errors import FedembedError
from fedembed.serving.index import ExactIndex

VECTOR_FILES = ("embeddings.fasttext.bin", "embeddings.bin", "embeddings.txt")   # the first a run has
FASTTEXT_MAGIC = 793712314   # the first int32 of Facebook's fastText .bin (n-grams: vectors for unseen words)


@dataclass(frozen=True)
class PrivacyInfo:
    is_private: bool
    epsilon: float | None
    delta: float | None
    unit: str
    mechanism: str
    guarantee: str

    @classmethod
    def from_report(cls, report: dict[str, Any] | None) -> "PrivacyInfo":
        """report.json's `privacy` section; a run with no finite ε is reported as not private."""
        if report is None:
            return cls(False, None, None, "", "none", "unknown (no report.json)")
        p = report.get("privacy") or {}
        eps, delta = p.get("epsilon"), p.get("delta")
        mech, unit = str(p.get("mechanism") or "none"), str(p.get("unit") or "")
        if mech == "none":
            return cls(False, None, None, "", "none", "not private")
        if eps is None or not math.isfinite(float(eps)):
            return cls(False, None, _float(delta), unit, mech, f"not private (epsilon is unbounded; {mech})")
        text = f"(epsilon={float(eps):.6g}, delta={float(delta):.3g})-DP" if delta is not None \
            else f"epsilon={float(eps):.6g}-DP"
        return cls(True, float(eps), _float(delta), unit, mech, f"{text}{f' at {unit} level' if unit else ''} ({mech})")


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


@dataclass
class ServedModel:
    index: ExactIndex
    model: str = "unknown"
    run_name: str = ""
    rounds: int = 0
    privacy: PrivacyInfo = field(default_factory=lambda: PrivacyInfo.from_report(None))
    source: Path | None = None
    embed_text: Callable[[list[str]], np.ndarray] | None = None   # a sentence-encoder run: texts → unit vectors

    @property
    def oov_vectors(self) -> bool:
        """True when unseen words get vectors (a subword family's index has `oov`)."""
        return self.index.oov is not None


def load_model(path: str | Path) -> ServedModel:
    """A run directory (exported vectors + report.json) or one vectors file."""
    from fedembed.export import load_vectors

    path = Path(path)
    if path.is_file():
        vec_file, run_dir = path, None
    elif path.is_dir() and _config_family(path) == "sentence":
        return _sentence_model(path)
    elif path.is_dir():
        found = [path / f for f in VECTOR_FILES if (path / f).is_file()]
        if not found:
            raise FedembedError(f"{path} has no exported vectors ({' or '.join(VECTOR_FILES)}); "
                                f"run `fedembed export {path} {path / 'embeddings.bin'} --format word2vec-binary`")
        vec_file, run_dir = found[0], path
    else:
        raise FedembedError(f"no run directory or vectors file at {path}")
    try:
        kv = _load_fasttext(vec_file) if is_fasttext_bin(vec_file) else load_vectors(vec_file)
    except (ValueError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise FedembedError(f"cannot read vectors from {vec_file}: {exc}") from exc
    oov = kv.get_vector if getattr(kv, "bucket", 0) else None   # a fastText model: unseen words by n-grams
    try:
        index = ExactIndex(list(kv.index_to_key), kv.vectors, oov=oov)
    except ValueError as exc:
        raise FedembedError(f"cannot serve {vec_file}: {exc}") from exc
    served = ServedModel(index, source=vec_file)
    if run_dir is None:
        return served
    report = _read_json(run_dir / "report.json")
    run = (report or {}).get("run", {})
    served.privacy = PrivacyInfo.from_report(report)
    served.model = str(run.get("family") or _config_family(run_dir) or "unknown")
    served.run_name = str(run.get("name") or run_dir.name)
    served.rounds = int(run.get("rounds") or 0)
    return served


def _sentence_model(run_dir: Path) -> ServedModel:
    """A sentence-encoder run: its corpus of embedded sentences (sentences.npy + sentences.txt, written
    by the family's report) for NearestNeighbors, and the encoder with the run's fine-tuned part
    (sentence_part.npz) for EmbedText. Unlike word runs this needs the model code and weights."""
    from fedembed.sentence.serve import CORPUS_FILE, load_corpus, text_embedder

    corpus = run_dir / CORPUS_FILE
    texts, vectors = load_corpus(run_dir)
    try:
        index = ExactIndex(texts, vectors)
    except ValueError as exc:
        raise FedembedError(f"cannot serve {corpus}: {exc}") from exc
    report = _read_json(run_dir / "report.json")
    run = (report or {}).get("run", {})
    return ServedModel(index, "sentence", str(run.get("name") or run_dir.name), int(run.get("rounds") or 0),
                       PrivacyInfo.from_report(report), corpus, text_embedder(run_dir))


def is_fasttext_bin(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4)
    return len(head) == 4 and int.from_bytes(head, "little", signed=True) == FASTTEXT_MAGIC


def _load_fasttext(path: Path):
    """Facebook's fastText .bin (as `fedembed export --format fasttext-bin` writes it), by gensim."""
    from gensim.models.fasttext import load_facebook_vectors

    try:
        return load_facebook_vectors(str(path))
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in struct, numpy or gensim: one line either way
        from fedembed.data.lines import one_line

        raise ValueError(f"not a readable fastText model ({type(exc).__name__}: {one_line(exc)})") from exc


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FedembedError(f"{path} is not valid JSON: {exc}") from exc


def _config_family(run_dir: Path) -> str | None:
    try:
        return tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8")).get("model", {}).get("family")
    except (OSError, tomllib.TOMLDecodeError):
        return None
