"""`fedembed serve` as a real subprocess: prints its address, answers, stops cleanly on a signal."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from fedembed.cli import main
from fedembed.serving import EmbeddingClient
from fedembed.serving.testing import write_run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(50)]
    return write_run_dir(tmp_path_factory.mktemp("cli") / "run", words, rng.normal(size=(50, 8)), text=True)


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "fedembed.cli", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    m = re.search(r" on (127\.0\.0\.1:\d+)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no address printed: {line!r} {proc.stderr.read()}")
    return proc, m.group(1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_subprocess_answers_and_stops_on_signal(run_dir, sig):
    proc, address = _start(str(run_dir), "--port", "0", "--max-batch", "5")
    try:
        with EmbeddingClient(address) as c:
            info = c.info()
            assert (info["vocab_size"], info["dimension"], info["max_batch"]) == (50, 8, 5)
            assert info["privacy"]["guarantee"] == "not private"
            assert len(c.neighbors("w3", k=4)) == 4 and c.health() == "SERVING"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_refuses_bad_arguments(tmp_path, run_dir, capsys):
    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "no run directory or vectors file" in capsys.readouterr().err
    assert main(["serve", str(run_dir), "--port", "0", "--tls-cert", "x.pem"]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    assert main(["serve", str(run_dir), "--port", "0", "--max-batch", "0"]) == 2
    assert "max batch must be at least 1" in capsys.readouterr().err
