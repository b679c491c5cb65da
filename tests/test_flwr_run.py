"""`flwr run .` end to end: the project's ServerApp/ClientApp under Flower 1.42's simulation runtime.

The Flower CLI starts a detached local SuperLink (`flower-superlink --simulation`), which
starts `flower-superexec`, which starts one `flwr-simulation` process per run (and that one
starts Ray). Everything runs with a private FLWR_HOME in a temp dir (a fresh Flower config,
app installs and SuperLink state there, never ~/.flwr) and on free loopback ports, so a
SuperLink the developer may have running is neither reused nor disturbed. Every process
the test starts inherits FLWR_HOME=<that temp dir>; that is how it finds them in /proc,
stops them (SIGTERM to the SuperLink, as docs/FLWR_RUN.md says) and proves none is left.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from word_soup import word_soup_scenario

REPO = Path(__file__).resolve().parents[1]
FLWR = Path(sys.executable).with_name("flwr")

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the processes it started through /proc"),
    pytest.mark.skipif(not FLWR.exists(), reason=f"no flwr CLI next to {sys.executable}"),
]

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_with_env(entry: str) -> dict[int, str]:
    """Live (non-zombie) processes whose environment holds `entry`: pid -> command line."""
    needle = entry.encode() + b"\0"
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if b"\0" + needle not in b"\0" + (proc / "environ").read_bytes():
                continue
            stat = (proc / "stat").read_text()
            if stat[stat.rindex(")") + 2] in "ZX":  # exited, waiting to be reaped
                continue
            found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return found


def _wait_gone(entry: str, timeout: float) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    left = _processes_with_env(entry)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = _processes_with_env(entry)
    return left


def _kill(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.fixture
def flwr_env(tmp_path):
    """Environment for `flwr`: private FLWR_HOME and ports, no runtime installs, nothing off-machine.

    Teardown stops whatever is still running from this FLWR_HOME (SIGTERM, then SIGKILL)
    whether the test passed or not.
    """
    home = tmp_path / "flwr-home"
    env = dict(os.environ)
    env.update({
        "FLWR_HOME": str(home),
        # Flower 1.42 runs `uv sync` for every run unless the SuperLink starts with this set.
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        # The local SuperLink `flwr run` starts listens on these (defaults 39091 / 39093).
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(_free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(_free_port()),
        # Loopback only: no update check, no telemetry, no Ray usage stats.
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "0",
    })
    env.pop("RAY_ADDRESS", None)
    entry = f"FLWR_HOME={home}"
    yield env
    left = _processes_with_env(entry)
    if left:
        _kill([p for p, cmd in left.items() if "flower-superlink" in cmd], signal.SIGTERM)
        left = _wait_gone(entry, 20)
        _kill(left, signal.SIGKILL)
        _wait_gone(entry, 10)


def test_flwr_run_local_simulation(tmp_path, flwr_env):
    from gensim.models import KeyedVectors

    scenario = word_soup_scenario(tmp_path, "flwr-run-test", random.Random(0))
    out = (tmp_path / "run").resolve()
    entry = f"FLWR_HOME={flwr_env['FLWR_HOME']}"

    cmd = [str(FLWR), "run", ".", "--stream",
           # partition.num_clients == 3, so the federation must have 3 SuperNodes.
           "--federation-config", "num-supernodes=3 client-resources-num-cpus=1",
           # `rounds` overrides the scenario's 5.
           "--run-config", f"scenario={json.dumps(str(scenario))} out={json.dumps(str(out))} rounds=2"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=flwr_env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "Starting local SuperLink" in log, log  # ours, not one already running
    assert "Successfully started run" in log, log
    assert "(3 simulated SuperNodes)" in log, log
    assert f"run directory {out} complete" in log, log

    # `flwr run` must leave pyproject.toml alone: 1.42 migrates a legacy
    # [tool.flwr.federations] section into $FLWR_HOME/config.toml and comments it out.
    assert "Migration completed" not in log, log
    assert "CONFIGURATION MIGRATION NOTICE" not in (REPO / "pyproject.toml").read_text(encoding="utf-8")

    # What the ServerApp wrote.
    rounds = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["clients_ok"] == 3 and r["failed"] == 0 for r in rounds), rounds
    assert (out / "checkpoint.npz").is_file()
    kv = KeyedVectors.load_word2vec_format(str(out / "embeddings.txt"), binary=False)
    assert kv.vector_size == 16 and "tiger" in kv.key_to_index
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["rounds"] == 2 and report["run"]["clients"] == 3 and report["run"]["dim"] == 16, report
    assert "quality" in report and "baseline" not in report, report

    # No runtime dependency installation: the SuperLink started its SuperExec without
    # `--allow-runtime-dependency-installation` and no runtime env was created.
    running = _processes_with_env(entry)
    superlinks = [p for p, c in running.items() if "flower-superlink" in c]
    superexecs = [c for c in running.values() if "flower-superexec" in c]
    assert len(superlinks) == 1, running  # the detached local SuperLink `flwr run` leaves behind
    assert superexecs and not any("--allow-runtime-dependency-installation" in c for c in superexecs), running
    assert not (Path(flwr_env["FLWR_HOME"]) / "runtime-envs").exists()

    # The run is recorded as finished on the SuperLink.
    ls = subprocess.run([str(FLWR), "ls", "--format", "json"], cwd=tmp_path, env=flwr_env,
                        capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stdout + ls.stderr
    runs = json.loads(ls.stdout)["runs"]
    assert len(runs) == 1 and runs[0]["status"].startswith("finished:completed"), runs

    # Stop it the documented way (SIGTERM to the SuperLink); its SuperExec follows.
    _kill(superlinks, signal.SIGTERM)
    left = _wait_gone(entry, 20)
    assert not left, f"still running after SIGTERM to the SuperLink: {left}"
    print(f"flwr run took {elapsed:.1f}s")


@pytest.mark.slow
def test_flwr_run_the_default_scenario_on_flowers_default_federation(tmp_path, flwr_env):
    """`flwr run .` as a Flower user starts it: the built-in default scenario (10 clients, SecAgg+, the
    built-in corpus) on Flower's default federation of 2 simulated SuperNodes, which host the 10
    clients as a pool (fedembed/federation/supernodes.py). One round via the run config. About 2 min."""
    out = (tmp_path / "default").resolve()
    entry = f"FLWR_HOME={flwr_env['FLWR_HOME']}"
    cmd = [str(FLWR), "run", ".", "--stream", "--run-config", f"out={json.dumps(str(out))} rounds=1"]
    proc = subprocess.run(cmd, cwd=REPO, env=flwr_env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "(2 simulated SuperNodes)" in log, log
    assert "10 clients on a pool of 2 SuperNodes" in log, log
    assert f"run directory {out} complete" in log, log
    rounds = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["round"] for r in rounds] == [1] and rounds[0]["clients_ok"] == 10, rounds
    assert "event" not in rounds[0] and rounds[0]["secagg"]["survivors"] == 10, rounds
    assert rounds[0]["train_loss"] > 0 and rounds[0]["examples"] > 0, rounds   # the sums from under the masks
    assert (out / "report.json").is_file()

    ls = subprocess.run([str(FLWR), "ls", "--format", "json"], cwd=tmp_path, env=flwr_env,
                        capture_output=True, text=True, timeout=60)
    runs = json.loads(ls.stdout)["runs"]
    assert len(runs) == 1 and runs[0]["status"].startswith("finished:completed"), runs
    superlinks = [p for p, c in _processes_with_env(entry).items() if "flower-superlink" in c]
    _kill(superlinks, signal.SIGTERM)
    left = _wait_gone(entry, 20)
    assert not left, f"still running after SIGTERM to the SuperLink: {left}"
