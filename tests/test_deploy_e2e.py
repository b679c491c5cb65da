"""The deployment runtime end to end: one SuperLink and three SuperNodes as processes on
loopback, TLS and SuperNode authentication on, two rounds started with `flwr run`.

Node 2 is an edge client started with `fedembed client --data device2.txt ...`: it
tokenizes its own raw text file itself (fedembed/data/device.py); nodes 0 and 1 are plain
`flower-supernode`s reading the server's shards. Before the run
the SuperLink is restarted (same state database) and the test waits until every SuperNode
has reconnected. Every process gets a FLWR_HOME under the test's temp dir; the fixture
stops them all and checks in /proc that none is left.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from word_soup import EVAL_WORDS, word_soup, word_soup_scenario

from fedembed import checkpoint
from fedembed.deploy.federation import LocalFederation
from fedembed.deploy.processes import processes_with_home, spawn, wait_for_log

pytestmark = [
    pytest.mark.slow,  # about 1.5 minutes on 2 cores
    pytest.mark.skipif(not sys.platform.startswith("linux")
                       or not Path(sys.executable).with_name("flower-superlink").exists(),
                       reason="needs Linux (/proc) and Flower's executables in this venv"),
]


def _scenario(tmp_path: Path) -> Path:
    """The shared word-soup scenario, and node 2's own text drawn from the same words."""
    rng = random.Random(0)
    scenario = word_soup_scenario(tmp_path, "deploy-e2e", rng)
    (tmp_path / "device2.txt").write_text(word_soup(rng, 200), encoding="utf-8")
    return scenario


@pytest.fixture
def fed(tmp_path):
    federation = LocalFederation(tmp_path / "fed", 3)
    yield federation
    left = federation.stop()
    assert not left and not processes_with_home(federation.home), f"still running: {left}"


def test_deployed_federation_two_rounds(tmp_path, fed):
    scenario = _scenario(tmp_path)
    out = tmp_path / "run"
    fed.prepare()
    fed.start_superlink()
    for i in range(3):
        fed.register(i)
    fed.start_node(0)
    fed.start_node(1)
    # Node 2 is a device: `fedembed client` on its own text file (FLWR_HOME under the
    # federation's, so the fixture's cleanup finds its processes too).
    fed.nodes[2] = spawn("fedembed client 2", [
        sys.executable, "-m", "fedembed.cli", "client", "--data", str(tmp_path / "device2.txt"),
        "--superlink", fed.address, "--root-certificates", str(fed.tls.ca_cert),
        "--auth-key", str(fed.node_key(2)[0]), "--partition-id", "2", "--num-partitions", "3",
        "--cache", str(tmp_path / "device2-cache"), "--flwr-home", str(fed.home / "nodes" / "2")],
        fed.home / "nodes" / "2", fed.logs / "supernode-2.log", cwd=tmp_path)
    assert sorted(fed.wait_online().values()) == ["online"] * 3

    # The SuperLink restarts; the SuperNodes keep retrying and come back on their own.
    fed.stop_superlink()
    assert all(p.alive() for p in fed.nodes.values())
    fed.start_superlink()
    # The restored state may still list them online: wait for each node to say it reconnected.
    for proc in fed.nodes.values():
        assert wait_for_log(proc, "Connection successful after", timeout=180), proc.log_text()[-3000:]
    assert sorted(fed.wait_online(timeout=180).values()) == ["online"] * 3

    fed.run({"scenario": str(scenario), "out": str(out), "rounds": 2}, timeout=900)

    # No run-time dependency installation anywhere.
    cmdlines = processes_with_home(fed.home).values()
    assert any("flower-superexec" in c for c in cmdlines)
    assert not any("--allow-runtime-dependency-installation" in c for c in cmdlines), cmdlines

    rounds = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["clients_ok"] == 3 and r["failed"] == 0 and r["rejected"] == 0 for r in rounds), rounds
    state = checkpoint.load(out)
    assert state.round == 2
    assert {k: v.shape for k, v in state.tables.items()} == {"in_vectors": (len(EVAL_WORDS), 16),
                                                             "out_vectors": (len(EVAL_WORDS), 16)}
    assert all(np.isfinite(v).all() for v in state.tables.values())
    assert (out / "embeddings.txt").is_file() and (out / "report.json").is_file()

    # The edge node tokenized its own file; every node logged each round's peak memory.
    logs = {i: p.log_text() for i, p in fed.nodes.items()}
    assert "fedembed edge: tokenized" in logs[2], logs[2][-3000:]
    assert list((tmp_path / "device2-cache").glob("*/client_00000.ids")), "the device's shard is in its cache"
    for i, text in logs.items():
        assert text.count("peak memory") >= 2, (i, text[-3000:])
