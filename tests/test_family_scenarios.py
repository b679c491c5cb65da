"""The shipped node2vec and sentence scenarios parse and validate (their data is built by
bench/get_debian.sh, so only the scenario is checked here), and `--dry-run` prints their pipeline."""
from __future__ import annotations

from pathlib import Path

import pytest

from fedembed import compose, models
from fedembed.cli import main

SCENARIOS = Path(__file__).resolve().parent.parent / "simulations" / "scenarios"


@pytest.mark.parametrize("name, family, kind", [("node2vec_debian", "node2vec", "graph"),
                                                ("sentence_debian", "sentence", "pairs")])
def test_shipped_family_scenarios_validate(name, family, kind, tmp_path, capsys):
    cfg = compose.load(SCENARIOS / f"{name}.toml")
    assert cfg.model.family == family and models.FAMILIES.get(family).data_kind == kind
    assert main(["simulate", "--dry-run", "--config", str(SCENARIOS / f"{name}.toml"), "--out", str(tmp_path / "r")]) == 0
    assert family in capsys.readouterr().out
