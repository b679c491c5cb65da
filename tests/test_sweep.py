"""`fedembed sweep`: a grid of scenario points, validated first, resumed after a kill, summarised.

The default tests run each point's federation on the threaded in-process grid (no Ray) by
swapping `fedembed.simulation.simulate`; one real `fedembed sweep` run is behind `slow`.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fedembed import checkpoint, metrics, simulation, sweep
from fedembed.run import federate
from fedembed.errors import ConfigError, FedembedError
from fedembed.report import REPORT
from fedembed.rundir import open_run_dir
from inprocess_grid import InProcessGrid

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def write_sweep(tmp_path: Path, base: Path, body: str, name: str = "sweep.toml") -> Path:
    p = tmp_path / name
    p.write_text(f'name = "tiny"\nbase = "{base.name}"\n' + body, encoding="utf-8")
    return p


GRID = '''
[set]
"federation.rounds" = 2
[grid]
"partition.alpha" = [0.1, 10.0]
"federation.aggregate" = ["rowwise", "fedavg"]
'''


class InProcessRuns:
    """Stands in for fedembed.simulation.simulate; `kill` = {point dir name: round to die in}."""

    def __init__(self, kill: dict[str, int] | None = None):
        self.kill, self.calls = dict(kill or {}), []

    def __call__(self, config=None, out="runs/default", *, resume=False, overrides=None, progress=True):
        cfg, run_dir = open_run_dir(Path(out), config, overrides, resume)
        self.calls.append((run_dir.name, resume))
        grid = InProcessGrid(cfg.partition.num_clients, workers=8, die_at_round=self.kill.pop(run_dir.name, None))
        try:
            return federate(grid, cfg, run_dir, resume=resume, progress=False)
        finally:
            grid.close()


def test_a_two_by_two_sweep_resumes_after_a_kill(tmp_path, write_scenario, monkeypatch):
    base = write_scenario("base.toml", partition={"name": "dirichlet", "num_clients": 3})
    path = write_sweep(tmp_path, base, GRID)
    out = tmp_path / "out"
    names = [p.name for p in sweep.load(path).points]
    assert names == ["alpha=0.1,aggregate=rowwise", "alpha=0.1,aggregate=fedavg",
                     "alpha=10.0,aggregate=rowwise", "alpha=10.0,aggregate=fedavg"]

    killed = InProcessRuns(kill={names[1]: 2})          # the second point dies in its round 2
    monkeypatch.setattr(simulation, "simulate", killed)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(path, out, progress=False)
    assert (out / names[0] / REPORT).is_file()
    assert checkpoint.load(out / names[1]).round == 1 and not (out / names[1] / REPORT).exists()
    assert not (out / names[2]).exists()
    partial = (out / "summary.md").read_text()
    assert names[0] in partial and "done" not in partial.split(names[1])[1].split("\n")[0]

    again = InProcessRuns()
    monkeypatch.setattr(simulation, "simulate", again)
    rows = sweep.run(path, out, progress=False)
    assert again.calls == [(names[1], True), (names[2], False), (names[3], False)]  # finished point skipped
    assert [r["round"] for r in metrics.read(out / names[1])] == [1, 2]
    assert [r["status"] for r in rows] == ["done", "ran", "ran", "ran"]
    with open(out / "summary.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [t["point"] for t in table] == names
    assert {t["partition.alpha"] for t in table} == {"0.1", "10.0"} and all(t["wordsim353"] for t in table)
    md = (out / "summary.md").read_text()
    assert md.count("\n| alpha=") == 4 and "| partition.alpha | federation.aggregate |" in md
    png = out / "alpha__aggregate.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each point's own run directory has its report, summary.csv and plots
    for n in names:
        assert json.loads((out / n / REPORT).read_text())["run"]["partition"] == "dirichlet"
        assert (out / n / "summary.csv").is_file() and (out / n / "quality.png").is_file()

    third = InProcessRuns()
    monkeypatch.setattr(simulation, "simulate", third)
    sweep.run(path, out, progress=False)
    assert third.calls == []                            # everything finished: nothing runs


def test_a_point_dir_from_another_sweep_is_refused(tmp_path, write_scenario, monkeypatch):
    base = write_scenario("base.toml")
    out = tmp_path / "out"
    monkeypatch.setattr(simulation, "simulate", InProcessRuns())
    sweep.run(write_sweep(tmp_path, base, '[set]\n"federation.rounds" = 1\n[grid]\n"model.dim" = [8]\n'), out,
              progress=False)
    changed = write_sweep(tmp_path, base, '[set]\n"federation.rounds" = 1\n"model.window" = 2\n'
                                          '[grid]\n"model.dim" = [8]\n', "changed.toml")
    with pytest.raises(ConfigError, match="holds a run of another scenario.*model.window"):
        sweep.run(changed, out, progress=False)


@pytest.mark.parametrize("body, match", [
    ('[grid]\n"partition.alpha" = [0.1]\n[extra]\n', "unknown key extra"),
    ('[grid]\n', "one or two keys, it names 0"),
    ('[grid]\n"a.b" = [1]\n"c.d" = [1]\n"e.f" = [1]\n', "one or two keys, it names 3"),
    ('[grid]\n"partition.alpha" = []\n', "grid.partition.alpha must be a non-empty list"),
    ('[grid]\n"partition.alpha" = 0.5\n', "grid.partition.alpha must be a non-empty list"),
    ('[grid]\n"partition.alpha" = [1.0, 1.0]\n', "distinct"),
    ('[grid]\n"partition.alpha" = [0.5, -1.0]\n', "point alpha=-1.0: .*partition.alpha must be"),
    ('[grid]\n"partition.alphaa" = [0.5]\n', "unknown key: partition.alphaa"),
    ('[set]\n"partition.alpha" = 1.0\n[grid]\n"partition.alpha" = [0.5]\n', "both in \\[set\\] and in \\[grid\\]"),
])
def test_bad_sweep_files_are_refused_before_anything_runs(tmp_path, write_scenario, body, match, monkeypatch):
    runs = InProcessRuns()
    monkeypatch.setattr(simulation, "simulate", runs)
    path = write_sweep(tmp_path, write_scenario("base.toml"), body)
    with pytest.raises(ConfigError, match=match):
        sweep.run(path, tmp_path / "out", progress=False)
    assert runs.calls == []


def test_nested_tables_and_one_key(tmp_path, write_scenario):
    path = write_sweep(tmp_path, write_scenario("base.toml"), "[grid.behaviour]\ndropout = [0.0, 0.2]\n")
    s = sweep.load(path)
    assert s.keys == ["behaviour.dropout"] and [p.name for p in s.points] == ["dropout=0.0", "dropout=0.2"]
    assert s.points[1].cfg.behaviour.dropout == 0.2


def test_a_failed_point_is_reported_and_the_rest_run(tmp_path, write_scenario, monkeypatch):
    calls = []

    def flaky(config=None, out="runs/default", **kw):
        calls.append(Path(out).name)
        if Path(out).name == "dim=8":
            raise FedembedError("round 1: no client update could be aggregated")
        return InProcessRuns()(config, out, **kw)

    monkeypatch.setattr(simulation, "simulate", flaky)
    path = write_sweep(tmp_path, write_scenario("base.toml"), '[set]\n"federation.rounds" = 1\n'
                                                              '[grid]\n"model.dim" = [8, 12]\n')
    with pytest.raises(FedembedError, match="1 point\\(s\\) failed \\(dim=8\\)"):
        sweep.run(path, tmp_path / "out", progress=False)
    assert calls == ["dim=8", "dim=12"]
    assert "failed: round 1" in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.slow
def test_sweep_cli_with_real_simulations(tmp_path, write_scenario):
    import subprocess
    import sys

    base = write_scenario("base.toml")
    path = write_sweep(tmp_path, base, '[set]\n"federation.rounds" = 1\n[grid]\n"partition.name" = ["iid", "quantity"]\n')
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "fedembed.cli", "sweep", "--config", str(path), "--out", str(out),
                          "--quiet"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| name=iid |" in res.stdout and (out / "name.png").is_file()
    assert (out / "name=quantity" / REPORT).is_file()
