"""Shared fixtures: a small real corpus (gensim's Lee news corpus) and a scenario over it."""
from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import settings

from fedembed.data.tokenize import tokenize

# Property tests draw the same examples on every run by default, so a CI run can only fail on
# what the code changed; `HYPOTHESIS_PROFILE=explore pytest ...` searches new examples.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def _lee() -> Path:
    from gensim.test.utils import datapath

    return Path(datapath("lee_background.cor"))


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> dict[str, Path]:
    """The Lee corpus (≈60k tokens) as a text file, and a public word list with counts built from it."""
    root = tmp_path_factory.mktemp("corpus")
    corpus = root / "lee.txt"
    shutil.copy(_lee(), corpus)
    counts: Counter[str] = Counter()
    for line in corpus.read_text(encoding="utf-8").splitlines():
        counts.update(tokenize(line))
    words = root / "words.txt"
    words.write_text("".join(f"{w} {c}\n" for w, c in counts.most_common() if c >= 3), encoding="utf-8")
    return {"corpus": corpus, "words": words}


def scenario_toml(small_corpus: dict[str, Path], **sections: dict) -> str:
    """A small, fast scenario over the Lee corpus; `sections` override keys per section."""
    base: dict[str, dict] = {
        "data": {"corpus": str(small_corpus["corpus"])},
        "vocab": {"source": str(small_corpus["words"]), "min_count": 3},
        "partition": {"name": "iid", "num_clients": 3},
        "model": {"dim": 16, "window": 3, "negative": 3},
        "train": {"batch_size": 256, "neg_share": 16},
        "federation": {"rounds": 2},
        "eval": {"baseline": False},
        "secagg": {"enabled": False},  # the plain path; secure-aggregation tests turn it on
    }
    for sec, vals in sections.items():
        base.setdefault(sec, {}).update(vals)
    import tomli_w

    return tomli_w.dumps(base)


@pytest.fixture
def write_scenario(tmp_path, small_corpus):
    def write(name: str = "scenario.toml", **sections: dict) -> Path:
        p = tmp_path / name
        p.write_text(scenario_toml(small_corpus, **sections), encoding="utf-8")
        return p
    return write


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """Flower's Message needs the process's run identity, which a real runtime sets (every test:
    the in-process grid, tests/inprocess_grid.py, builds Messages outside a runtime)."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)


@pytest.fixture
def one_torch_thread():
    """Small tensors: torch's thread pool only fights the other processes for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
