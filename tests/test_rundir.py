"""A run directory counts as holding a run only once its data is prepared (fedembed/rundir.py):
one whose preparation failed can be started again, or resumed, with the scenario fixed."""
from __future__ import annotations

import numpy as np
import pytest

from fedembed import compose
from fedembed import checkpoint
from fedembed.data.prepare import prepare
from fedembed.errors import ConfigError, CorpusError
from fedembed.preparing import PREPARING
from fedembed.rundir import CONFIG, open_run_dir


@pytest.fixture
def bad_corpus(tmp_path):
    return tmp_path / "not-yet.jsonl"  # a corpus the user has not put in place yet


def failed_run(out, write_scenario, bad_corpus):
    """A `simulate` that stopped in data preparation (what the server's prepare() raises)."""
    scenario = write_scenario("bad.toml", data={"corpus": str(bad_corpus)})
    cfg, run_dir = open_run_dir(out, scenario, None, resume=False)
    with pytest.raises(CorpusError, match=rf"corpus path does not exist: {bad_corpus}"):
        prepare(cfg, run_dir)
    assert (out / CONFIG).is_file()


def test_a_rerun_takes_over_a_directory_whose_preparation_failed(tmp_path, write_scenario, bad_corpus):
    out = tmp_path / "run"
    failed_run(out, write_scenario, bad_corpus)
    assert (out / PREPARING).is_file()
    cfg, run_dir = open_run_dir(out, write_scenario(), None, resume=False)  # was: "already holds a run"
    assert compose.load(out / CONFIG).to_dict() == cfg.to_dict()
    prep = prepare(cfg, run_dir)
    assert not (out / PREPARING).exists() and prep.manifest.num_clients == cfg.partition.num_clients
    with pytest.raises(ConfigError, match="already holds a run"):  # prepared: now it is a run
        open_run_dir(out, write_scenario(), None, resume=False)


def test_resume_with_a_fixed_scenario_starts_it_afresh(tmp_path, write_scenario, bad_corpus):
    out = tmp_path / "run"
    failed_run(out, write_scenario, bad_corpus)
    fixed = write_scenario(partition={"num_clients": 2})  # was: "different scenario"
    cfg, run_dir = open_run_dir(out, fixed, None, resume=True)
    assert cfg.partition.num_clients == 2 and compose.load(out / CONFIG).partition.num_clients == 2
    prepare(cfg, run_dir)
    assert not (out / PREPARING).exists()


def test_resume_without_a_scenario_retries_the_saved_one(tmp_path, write_scenario, bad_corpus):
    out = tmp_path / "run"
    failed_run(out, write_scenario, bad_corpus)
    cfg, _ = open_run_dir(out, None, {"federation.rounds": 5}, resume=True)
    assert cfg.data.corpus == str(bad_corpus) and cfg.federation.rounds == 5
    with pytest.raises(CorpusError, match=rf"does not exist: {bad_corpus}"):  # says exactly why, again
        prepare(cfg, out)
    bad_corpus.write_text("".join(f'{{"client_id": "{c}", "text": "the government said"}}\n' for c in "abc"))
    cfg, _ = open_run_dir(out, None, None, resume=True)  # the file is there now: the saved scenario runs
    prepare(cfg, out)
    assert not (out / PREPARING).exists()


def test_a_half_written_preparation_is_rebuilt_not_reused(tmp_path, write_scenario):
    """Killed after the manifest was written but before the run was marked prepared: a takeover
    with another scenario must not reuse the other scenario's shards."""
    out = tmp_path / "run"
    cfg, _ = open_run_dir(out, write_scenario(partition={"num_clients": 3}), None, resume=False)
    prepare(cfg, out)
    (out / PREPARING).touch()
    cfg, _ = open_run_dir(out, write_scenario(partition={"num_clients": 2}), None, resume=False)
    assert prepare(cfg, out).manifest.num_clients == 2


def test_prepared_or_trained_directories_are_still_protected(tmp_path, write_scenario):
    out = tmp_path / "run"
    cfg, _ = open_run_dir(out, write_scenario(), None, resume=False)
    prepare(cfg, out)
    with pytest.raises(ConfigError, match="different scenario.*model.dim"):
        open_run_dir(out, write_scenario(model={"dim": 8}), None, resume=True)
    legacy = tmp_path / "legacy"  # written before the marker existed: a config, no marker
    legacy.mkdir()
    cfg.save(legacy / CONFIG)
    with pytest.raises(ConfigError, match="already holds a run"):
        open_run_dir(legacy, write_scenario(), None, resume=False)
    trained = tmp_path / "trained"  # a checkpoint wins over a stray marker
    open_run_dir(trained, write_scenario(), None, resume=False)
    checkpoint.save(trained, checkpoint.State(1, {"in_vectors": np.zeros((2, 2), dtype=np.float32)}, "x"))
    with pytest.raises(ConfigError, match="already holds a run"):
        open_run_dir(trained, write_scenario(), None, resume=False)

