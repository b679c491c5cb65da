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
from fedembed.serving.cli import BLAS_ENV
from fedembed.serving.testing import write_run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(50)]
    return write_run_dir(tmp_path_factory.mktemp("cli") / "run", words, rng.normal(size=(50, 8)), text=True)


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    """`fedembed serve ...` as a user starts it: no BLAS thread variables set beforehand."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "fedembed.cli", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**env, "PYTHONUNBUFFERED": "1"})
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
        # --blas-threads (default 1) took effect: numpy was not loaded before it was applied.
        assert "already loaded" not in err and "does not take effect" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_refuses_bad_arguments(tmp_path, run_dir, capsys):
    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "no run directory or vectors file" in capsys.readouterr().err
    assert main(["serve", str(run_dir), "--port", "0", "--tls-cert", "x.pem"]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    assert main(["serve", str(run_dir), "--port", "0", "--max-batch", "0"]) == 2
    assert "--max-batch must be 1 to" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [
    ("--max-message-mb", "nan"), ("--max-message-mb", "inf"), ("--max-message-mb", "100000"),
    ("--max-message-mb", "0"), ("--max-message-mb", "-1"), ("--max-batch", "3000000000"),
    ("--max-concurrent", "0"), ("--workers", "0"), ("--blas-threads", "0"), ("--port", "70000"),
])
def test_serve_out_of_range_flag_is_one_line(run_dir, capsys, flag, value):
    """One line naming the flag and exit 2, never a traceback (NaN and sizes gRPC cannot take:
    its message limits are C ints)."""
    assert main(["serve", str(run_dir), "--port", "0", flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fedembed: error: {flag} ") and value in err, err
