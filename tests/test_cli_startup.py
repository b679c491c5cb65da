"""`fedembed` starts light: what a command loads before it has checked its arguments.

Each case runs in a fresh interpreter and reports which heavy packages were imported, so the
tests hold without timing anything: building the parser loads none of them (`--help`, argument
errors), `serve` sets its BLAS thread count before numpy is loaded, and `simulate` checks its
scenario and flags before it imports Flower's simulation runtime and Ray.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("flwr", "ray", "torch", "numpy", "grpc", "gensim", "scipy", "opacus")

_CHILD = """
import contextlib, io, json, sys
import fedembed.serving.cli as serve_cli
argv = json.loads(sys.argv[1])
seen = {}
real_limit = serve_cli._limit_blas_threads

def spy(n):  # what `fedembed serve` has loaded when it sets the BLAS thread count
    seen["at_blas_limit"] = sorted(m for m in HEAVY if m in sys.modules)
    raise SystemExit(0)

serve_cli._limit_blas_threads = spy
from fedembed.cli import main
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "err": err.getvalue(), "loaded": sorted(m for m in HEAVY if m in sys.modules),
                  "modules": sorted(m for m in ("fedembed.simulation", "fedembed.loader") if m in sys.modules),
                  **seen}))
"""


def _run(*argv: str, cwd: Path | None = None) -> dict:
    code = f"HEAVY = {HEAVY!r}\n{_CHILD}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(list(argv))], capture_output=True, text=True,
                         timeout=120, env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    ["--help"], ["serve", "--help"], ["simulate", "--help"], ["deploy", "--help"],
    ["serve", "run", "--port", "x"], ["simulate", "--rounds", "many"], ["nosuchcommand"],
])
def test_help_and_argument_errors_load_nothing_heavy(argv):
    r = _run(*argv)
    assert r["code"] in (0, 2) and r["loaded"] == [], r


def test_serve_limits_blas_threads_before_numpy_loads(tmp_path):
    """OpenBLAS reads its thread count once, when numpy loads: `--blas-threads` (default 1) is
    applied while numpy, grpc and Flower are still unloaded."""
    (tmp_path / "embeddings.txt").write_text("1 2\na 1 0\n", encoding="utf-8")
    r = _run("serve", str(tmp_path), "--port", "0")
    assert r["code"] == 0 and r["at_blas_limit"] == [], r


@pytest.mark.parametrize("argv, says", [
    (["evaluate", "/nonexistent/run"], "no run directory or vectors file at /nonexistent/run"),
    (["export", "/nonexistent/run", "out.txt"], "no run directory or vectors file at /nonexistent/run"),
    (["serve", "/nonexistent/run", "--port", "0"], "no run directory or vectors file at /nonexistent/run"),
    (["serve", "/nonexistent/run", "--port", "0", "--max-message-mb", "nan"], "--max-message-mb must be"),
])
def test_evaluate_export_serve_refuse_a_missing_path_before_loading_anything(argv, says):
    r = _run(*argv)
    assert r["code"] == 2 and says in r["err"] and r["err"].count("\n") == 1, r
    assert r["loaded"] == [], r


@pytest.mark.parametrize("argv, blamed, not_blamed", [
    (["--rounds", "0"], "--rounds 0: federation.rounds must be > 0", "scenario.toml"),
    (["--clients", "0"], "--clients 0: partition.num_clients must be > 0", "scenario.toml"),
    (["--set", "model.dimm=5"], "--set model.dimm=5: unknown key: model.dimm", "scenario.toml"),
    (["--set", "model.dim=-5"], "--set model.dim=-5: model.dim must be > 0", "scenario.toml"),
    (["--clients", "2"], "--clients 2 and ", None),  # with the file's clients_per_round = 3: both named
    (["--set", "federation.rounds=2"], "scenario.toml: train.lr must be > 0", "--set"),
])
def test_simulate_blames_the_flag_or_the_file_before_importing_the_runtime(tmp_path, argv, blamed, not_blamed):
    scenario = tmp_path / "scenario.toml"
    wrong_file = "train.lr" in blamed
    scenario.write_text("[federation]\nclients_per_round = 3\n" + ("[train]\nlr = -1.0\n" if wrong_file else ""),
                        encoding="utf-8")
    r = _run("simulate", "--config", str(scenario), "--out", str(tmp_path / "out"), *argv, cwd=tmp_path)
    err = r["err"]
    assert r["code"] == 2 and err.count("\n") == 1, r
    assert err.startswith(f"fedembed: error: {blamed.replace('scenario.toml', str(scenario))}"), err
    if not_blamed:
        assert not_blamed not in err.removeprefix("fedembed: error: ").split(": ")[0], err
    # The scenario was refused before Flower's simulation runtime and Ray were imported.
    assert "fedembed.simulation" not in r["modules"] and "ray" not in r["loaded"], r
    assert not (tmp_path / "out").exists()
