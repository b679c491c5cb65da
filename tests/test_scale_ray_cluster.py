"""`simulation.ray_address`: the same scenario on an existing Ray cluster (docs/SCALE.md).

Starts a one-node cluster with `ray start --head` on loopback, runs a tiny scenario on it with
`fedembed simulate --set simulation.ray_address=...`, checks the run and that the actors ran
on that cluster (its session directory gained the ClientApp actors' logs), and stops it.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedembed import metrics

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def loopback_cluster(tmp_path):
    """A Ray head on 127.0.0.1 with 2 CPUs, no dashboard, its own temp dir; stopped afterwards."""
    if not RAY.is_file():
        pytest.skip("the ray CLI is not installed next to this Python")
    port = _free_port()
    temp = Path("/tmp") / f"fedembed-ray-{os.getpid()}-{port}"  # Ray's socket paths must stay short
    # Without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, Ray 2.55 ignores --node-ip-address for its GCS and
    # raylet and listens on every interface under the default-route address (docs/SCALE.md).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cmd = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=180)
    try:
        assert _cmdlines(temp) and all("192." not in c and "--node-ip-address=127.0.0.1" in c
                                       for c in _cmdlines(temp) if "gcs_server" in c), "the head is not on loopback"
        yield {"address": f"127.0.0.1:{port}", "temp": temp, "env": env}
    finally:
        # Stops the processes of this head only: `ray stop` would also stop other sessions' Ray.
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _cmdlines(temp: Path) -> list[str]:
    """Command lines of this cluster's processes (all of them name its temp dir)."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(temp) in cmd and int(proc.name) != os.getpid():
            out.append(cmd)
    return out


def _stop(temp: Path) -> None:
    """SIGTERM then SIGKILL to every process whose command line names this cluster's temp dir
    (GCS, raylet, agents, workers all carry it), and nothing else."""
    import signal

    def ours() -> list[int]:
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if str(temp) in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
        return [p for p in pids if p != os.getpid()]

    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for pid in ours():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while ours() and time.monotonic() < deadline:
            time.sleep(0.2)


def test_simulate_runs_on_an_existing_loopback_ray_cluster(tmp_path, write_scenario, loopback_cluster):
    scenario = write_scenario(federation={"rounds": 2, "clients_per_round": 2, "max_in_flight": 1,
                                          "sparse_upload": True})
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fedembed.cli", "simulate", "--quiet", "--config", str(scenario), "--out", str(out),
           "--set", f"simulation.ray_address={loopback_cluster['address']}"]
    done = subprocess.run(cmd, env=loopback_cluster["env"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = metrics.read(out)
    assert [r["round"] for r in rows] == [1, 2] and all(r["clients_ok"] == 2 for r in rows)
    report = json.loads((out / "report.json").read_text())
    assert 0 <= report["quality"]["wordsim353"]["oov"] < 1
    workers = loopback_cluster["temp"].glob("session_*/logs/worker-*")
    assert any("ClientAppActor" in p.read_text(errors="replace") for p in workers), \
        "no ClientApp actor ran on the cluster"
