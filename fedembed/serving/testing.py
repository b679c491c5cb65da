"""A servable run directory from given vectors, without training: for tests and bench/serving.py.

Writes what `fedembed simulate` writes for serving (vocab.tsv, embeddings.bin/.txt, a
config.toml naming the family, report.json with its `privacy` section), nothing else.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fedembed.export import export


def write_run_dir(run_dir: str | Path, words: list[str], vectors: np.ndarray, *, family: str = "sgns",
                  privacy: dict[str, Any] | None = None, text: bool = False, name: str = "served") -> Path:
    """`privacy` is report.json's section (epsilon, delta, unit, mechanism); None = not private.
    `text` also writes embeddings.txt (slow for large tables)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "vocab.tsv").write_text("".join(f"{w}\t1\n" for w in words), encoding="utf-8")
    export(words, vectors, run_dir / "embeddings.bin", "word2vec-binary")
    if text:
        export(words, vectors, run_dir / "embeddings.txt", "word2vec-text")
    (run_dir / "config.toml").write_text(f'name = "{name}"\n[model]\nfamily = "{family}"\n'
                                         f"dim = {vectors.shape[1]}\n", encoding="utf-8")
    report = {"run": {"name": name, "family": family, "dim": int(vectors.shape[1]), "vocab_size": len(words),
                      "rounds": 3},
              "privacy": privacy or {"epsilon": None, "delta": None, "unit": None, "mechanism": "none"}}
    (run_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return run_dir
