"""Real Flower simulation runs (Ray backend): multi-round training, outputs, kill and resume."""
from __future__ import annotations

import json
import os
import logging
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from gensim.models import KeyedVectors

import fedembed
from fedembed import checkpoint, metrics
from fedembed.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_multi_round_simulation_writes_a_complete_run(tmp_path, write_scenario):
    out = tmp_path / "run"
    report = fedembed.simulate(write_scenario(federation={"rounds": 3}, eval={"baseline": True}), out,
                               progress=False)
    rows = metrics.read(out)
    assert [r["round"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["clients"] == 3 and r["clients_ok"] == 3
        assert r["bytes_up"] > 0 and r["bytes_down"] > 0 and r["seconds"] > 0 and r["train_loss"] > 0
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert (out / "config.toml").is_file() and checkpoint.load(out).round == 3
    kv_txt = KeyedVectors.load_word2vec_format(str(out / "embeddings.txt"), binary=False)
    kv_bin = KeyedVectors.load_word2vec_format(str(out / "embeddings.bin"), binary=True)
    assert kv_txt.vector_size == 16 and len(kv_txt) == len(kv_bin) > 1000
    np.testing.assert_allclose(kv_txt["government"], kv_bin["government"], atol=1e-5)
    saved = json.loads((out / "report.json").read_text())
    assert saved == report
    for side in (report["quality"], report["baseline"]["gensim"]):
        assert -1 <= side["wordsim353"]["spearman"] <= 1 and 0 <= side["wordsim353"]["oov"] < 1
        assert side["simlex999"]["oov"] < 1 and 0 <= side["analogy"]["accuracy"] <= 1
    assert set(report["ratio_to_baseline"]) == {"wordsim353.spearman", "simlex999.spearman", "analogy.accuracy"}
    run = fedembed.load(out)
    assert run.round == 3 and run.config.federation.rounds == 3
    np.testing.assert_allclose(run.vectors["government"], kv_bin["government"], atol=1e-5)


def test_a_finished_run_directory_is_never_overwritten(tmp_path, write_scenario):
    out = tmp_path / "run"
    fedembed.simulate(write_scenario(federation={"rounds": 1}), out, progress=False)
    before = (out / "checkpoint.npz").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        fedembed.simulate(write_scenario(federation={"rounds": 1}), out, progress=False)
    with pytest.raises(ConfigError, match="different scenario.*model.dim"):
        fedembed.simulate(write_scenario(model={"dim": 8}), out, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="cannot resume"):
        fedembed.simulate(None, tmp_path / "nothing", resume=True, progress=False)
    assert (out / "checkpoint.npz").read_bytes() == before


def _simulate_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedembed.cli", "simulate", "--quiet", *args]


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, write_scenario):
    scenario = write_scenario(federation={"rounds": 4})
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_simulate_cmd("--config", str(scenario), "--out", str(killed)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            # The checkpoint, not metrics.jsonl: a round's metrics line is written just before its
            # checkpoint, and a kill between the two leaves the previous round's checkpoint.
            if checkpoint.exists(killed) and checkpoint.load(killed).round >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: driver and its Ray workers
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done_before = checkpoint.load(killed).round
    assert 2 <= done_before < 4 and not (killed / "report.json").exists()

    subprocess.run(_simulate_cmd("--out", str(killed), "--resume"), env=env, check=True, timeout=300,
                   capture_output=True)
    rows = metrics.read(killed)
    assert [r["round"] for r in rows] == [1, 2, 3, 4]
    assert checkpoint.load(killed).round == 4 and (killed / "report.json").is_file()

    straight = tmp_path / "straight"
    fedembed.simulate(scenario, straight, progress=False)
    a, b = checkpoint.load(killed).tables, checkpoint.load(straight).tables
    for name in a:  # same rounds, same seeds: the same tables up to float summation order
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow      # two real simulations (Ray); resume itself stays in the default run
def test_resume_can_extend_the_number_of_rounds(tmp_path, write_scenario):
    out = tmp_path / "run"
    fedembed.simulate(write_scenario(federation={"rounds": 1}), out, progress=False)
    fedembed.simulate(None, out, resume=True, overrides={"federation.rounds": 2}, progress=False)
    assert [r["round"] for r in metrics.read(out)] == [1, 2]
    assert checkpoint.load(out).round == 2


def test_a_ray_start_that_times_out_is_retried_then_reported(monkeypatch):
    from fedembed import simulation
    from fedembed.errors import FedembedError

    monkeypatch.setattr(simulation.time, "sleep", lambda s: None)
    calls: list[dict] = []
    shutdowns: list[int] = []

    # The two ways Ray 2.55 reports a missed start-up deadline (ray/_private/node.py): the GCS's
    # port file, a RuntimeError; the raylet's registration, a bare Exception (a CI failure).
    gcs_late = RuntimeError("Timed out waiting for file /tmp/ray/session_x/gcs_server_port_y")
    raylet_late = Exception("The current node timed out during startup. This could happen because some of "
                            "the raylet failed to startup or the GCS has become overloaded.")

    def flaky(failures):
        def init(**kwargs):
            calls.append(kwargs)
            if len(calls) <= len(failures):
                raise failures[len(calls) - 1]
        return init

    simulation.start_local_ray({"num_cpus": 2}, init=flaky([gcs_late, raylet_late]),
                               shutdown=lambda: shutdowns.append(1))
    assert len(calls) == 3 and len(shutdowns) == 2
    assert calls[-1]["num_cpus"] == 2 and "PYTHONPATH" in calls[-1]["runtime_env"]["env_vars"]

    calls.clear()
    with pytest.raises(FedembedError, match="Ray did not start after 3 attempts.*raylet failed to startup"):
        simulation.start_local_ray({"num_cpus": 2}, init=flaky([gcs_late, gcs_late, raylet_late]),
                                   shutdown=lambda: None)
    assert len(calls) == 3

    calls.clear()
    with pytest.raises(ValueError, match="num_cpus"):  # a bad argument is not retried
        simulation.start_local_ray({"num_cpus": -1}, init=flaky([ValueError("num_cpus must be >= 0")]),
                                   shutdown=lambda: None)
    assert len(calls) == 1


@pytest.mark.parametrize("sections, parsed", [
    ({}, False),                                  # a text corpus and a word list: nothing built in
    ({"data": {"corpus": "builtin"}}, True),
    ({"vocab": {"source": "builtin"}}, True),     # the public vocabulary is counted on the built-in corpus
])
def test_the_builtin_corpus_is_parsed_before_ray_starts(tmp_path, write_scenario, monkeypatch, sections, parsed):
    """WikiCorpus' workers forked after ray.init inherit Ray's SIGTERM handler, which prints a
    stack dump when WikiCorpus ends them: `fedembed simulate` printed one on the default scenario."""
    import ray

    from fedembed import simulation
    from fedembed.data import corpus

    events: list[str] = []

    class RayStarting(Exception):
        pass

    def start_local_ray(init_args):
        events.append("ray")
        raise RayStarting

    monkeypatch.setattr(corpus, "preload_builtin", lambda: events.append("corpus"))
    monkeypatch.setattr(simulation, "start_local_ray", start_local_ray)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(RayStarting):
        fedembed.simulate(write_scenario(**sections), tmp_path / "run", progress=False)
    assert events == (["corpus", "ray"] if parsed else ["ray"])


def test_flower_s_run_simulation_deprecation_is_not_shown_but_its_other_warnings_are(caplog):
    from fedembed import simulation

    simulation._quiet_start()
    simulation._quiet_start()  # idempotent: one filter
    flwr_logger = logging.getLogger("flwr")
    assert sum(isinstance(f, simulation._RunSimulationNotDeprecatedHere) for f in flwr_logger.filters) == 1
    from flwr.supercore.logger import warn_deprecated_feature

    with caplog.at_level(logging.WARNING, logger="flwr"):
        flwr_logger.propagate, before = True, flwr_logger.propagate
        try:
            warn_deprecated_feature("The `run_simulation` function is deprecated and will be removed")
            warn_deprecated_feature("Something else is deprecated")
        finally:
            flwr_logger.propagate = before
    messages = [r.getMessage() for r in caplog.records if r.name == "flwr"]
    assert any("Something else" in m for m in messages)
    assert not any("run_simulation" in m for m in messages)
