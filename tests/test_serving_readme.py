"""The README's Python serving example runs as written against a server of a default run.

A default run (`fedembed simulate`, no scenario) serves the default vocabulary; the example's
words must all be in it. The vectors here are random (training is not what is tested), the
vocabulary is the one the default scenario builds.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fedembed import config
from fedembed.data.text_shards import build_vocab
from fedembed.serving import EmbeddingServer, load_model
from fedembed.serving.testing import write_run_dir

README = Path(__file__).resolve().parents[1] / "README.md"
ADDRESS = "127.0.0.1:50051"


def readme_serving_example() -> str:
    section = README.read_text(encoding="utf-8").split("\n## Serving\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "expected one Python example in the README's Serving section"
    assert ADDRESS in blocks[0]
    return blocks[0]


def test_readme_serving_example_runs_against_a_default_run(tmp_path, capsys):
    words = build_vocab(config.Config()).words  # the defaults: what a default run's vocab.tsv holds
    vectors = np.random.default_rng(0).normal(size=(len(words), 16)).astype(np.float32)
    run_dir = write_run_dir(tmp_path / "default", list(words), vectors, name="default")
    code = readme_serving_example()
    with EmbeddingServer(load_model(run_dir), port=0) as server:
        exec(compile(code.replace(ADDRESS, server.address), str(README), "exec"), {})  # noqa: S102 - our README
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "not private" and len(printed) == 2, printed
