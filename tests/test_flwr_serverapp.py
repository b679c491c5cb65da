"""The ServerApp `flwr run .` starts (server/app.py main), on the in-process grid: it hosts the
scenario's clients on however many SuperNodes there are, and a failure names its cause in the
log; the built-in corpus is parsed without forking (what ended `flwr run` runs as "failed")."""
from __future__ import annotations

import itertools
import logging
import multiprocessing
import os

import pytest
from flwr.app import Context, RecordDict

from fedembed import compose, metrics
from fedembed.errors import ConfigError
from fedembed.federation import pool_batch, supernodes
from inprocess_grid import InProcessGrid


def _context(**run_config) -> Context:
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)


def test_the_federation_size_is_what_its_nodes_report_and_the_clients_are_fitted_to_it():
    assert supernodes.count(InProcessGrid(2)) == 2
    cfg = compose.load(None)                                   # the built-in default: 10 clients
    assert supernodes.fit(cfg, 2).simulation.nodes == 2
    assert supernodes.fit(cfg, 10).simulation.nodes == 0
    assert supernodes.fit(cfg, 10) is cfg
    assert "pool of 2" in supernodes.describe(supernodes.fit(cfg, 2))
    with pytest.raises(ConfigError, match="11 SuperNode.*10 clients"):
        supernodes.fit(cfg, 11)


def test_the_serverapp_runs_a_secure_scenario_on_fewer_supernodes_than_clients(tmp_path, write_scenario,
                                                                              one_torch_thread):
    from server.app import main

    scenario = write_scenario(partition={"num_clients": 5}, federation={"rounds": 3}, secagg={"enabled": True})
    grid = InProcessGrid(2)                                    # Flower's default federation: 2 SuperNodes
    main(grid, _context(scenario=str(scenario), out=str(tmp_path / "run"), rounds=2, resume=False))
    rows = metrics.read(tmp_path / "run")
    assert [r["round"] for r in rows] == [1, 2] and all(r["clients_ok"] == 5 for r in rows)
    assert grid.calls.get(pool_batch.BATCH, 0) > 0 and (tmp_path / "run" / "report.json").is_file()


def test_a_failure_under_flwr_run_names_its_cause_in_the_log(tmp_path, caplog):
    from server.app import main

    missing = tmp_path / "nowhere.toml"
    with caplog.at_level(logging.INFO, logger="flwr"), pytest.raises(Exception):
        main(InProcessGrid(2), _context(scenario=str(missing), out=str(tmp_path / "run"), rounds=1, resume=False))
    failed = [r.getMessage() for r in caplog.records if "the run failed" in r.getMessage()]
    assert len(failed) == 1 and "nowhere.toml" in failed[0], caplog.text


def test_a_bug_is_logged_with_its_type(tmp_path, caplog, monkeypatch):
    from server import app as server_app

    def broken(*a, **k):
        raise KeyError("partition 3")
    monkeypatch.setattr(server_app, "open_run_dir", broken)
    with caplog.at_level(logging.DEBUG, logger="flwr"), pytest.raises(KeyError):
        server_app.main(InProcessGrid(2), _context(out=str(tmp_path / "run")))
    assert "fedembed: the run failed: KeyError: 'partition 3'" in caplog.text
    assert "Traceback" in caplog.text


def test_the_builtin_corpus_is_parsed_without_forking(monkeypatch):
    from fedembed.data import corpus

    def no_fork(*a, **k):
        raise AssertionError("the built-in corpus' parse forked a process")
    monkeypatch.setattr(os, "fork", no_fork)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", no_fork)
    docs = corpus._parse_builtin()
    wiki = list(itertools.islice((d for d in docs if d.unit.startswith("wiki/")), 3))
    assert len(wiki) == 3 and all(len(d.tokens) >= corpus.WIKI_MIN_TOKENS for d in wiki)
