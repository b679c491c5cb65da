"""The family API (fedembed.models.Family, fedembed.data.sources): a family is one class registered by
name that declares what it needs; the run, the report and the CLI call it without knowing it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fedembed import checkpoint, compose, metrics, models
from fedembed.cli import main
from fedembed.data import sources
from fedembed.errors import ConfigError
from fedembed.federation import wire
from fedembed.models import FAMILIES, FamilyReport, LocalResult
from fedembed.models.base import BaseFamily, ones
from fedembed.run import federate
from inprocess_grid import InProcessGrid

pytestmark = pytest.mark.usefixtures("task_identity", "one_torch_thread")


@FAMILIES.register("toy_test")
class Toy(BaseFamily):
    """Per-word rows, an 'adapter' whose rows mean nothing (weight 1 each), and a private counter
    kept in the node's state: each round it adds its round count to the rows it saw."""
    tables = ("rows", "adapter")
    row_tables = ("rows",)

    def init_tables(self, vocab_size, seed):
        return {"rows": np.zeros((vocab_size, 2), np.float32), "adapter": np.zeros((3, 2), np.float32)}

    def train(self, tables, data, counts, lr_start, lr_end, seed, private=None, state=None):
        seen = np.bincount(data.ids, minlength=len(tables["rows"])).astype(np.float64)
        state["rounds"] = state.get("rounds", np.zeros(1)) + 1           # private: never sent
        local = {"rows": tables["rows"] + (seen > 0)[:, None].astype(np.float32),
                 "adapter": tables["adapter"] + np.float32(1.0)}
        return LocalResult(local, {"rows": seen, **ones(tables, ("adapter",))}, 0.0, len(data.ids), len(data.ids))

    def evaluate(self, run, quick=False):
        return {"mean_row": float(run.tables["rows"].mean())}

    def report(self, run):
        q = self.evaluate(run)
        return FamilyReport(q, baselines={"half": {"mean_row": q["mean_row"] / 2}}, ratios={"mean_row": 2.0},
                            headline={"federated": q})


def test_a_registered_family_runs_reports_and_evaluates_without_any_branch_for_it(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(model={"family": "toy_test"}, federation={"rounds": 2},
                                      eval={"every_round": True}))
    grid = InProcessGrid(cfg.partition.num_clients)
    report = federate(grid, cfg, tmp_path / "run", progress=False)
    tables = checkpoint.load(tmp_path / "run").tables
    # adapter rows: weight 1 from every client → the mean of their +1 deltas, each round
    np.testing.assert_allclose(tables["adapter"], 2.0)
    # rows: count-weighted mean of +1 deltas for the rows any client saw
    assert set(np.unique(tables["rows"])) <= {0.0, 1.0, 2.0} and tables["rows"].max() == 2.0
    assert report["quality"] == {"mean_row": pytest.approx(float(tables["rows"].mean()))}
    assert report["baseline"] == {"half": {"mean_row": pytest.approx(float(tables["rows"].mean()) / 2)}}
    assert report["ratio_to_baseline"] == {"mean_row": 2.0} and report["headline"]["federated"]
    assert all("quality" in r for r in metrics.read(tmp_path / "run"))   # round_figures, per round
    # the private state stays in each node's context.state, and in no message
    assert all(wire.family_state(ctx.state)["rounds"][0] == 2 for ctx in grid.contexts.values())
    assert all(wire.FAMILY_STATE not in content for _, content in grid.seen)
    cfg.save(tmp_path / "run" / "config.toml")   # as `fedembed simulate` leaves it (fedembed/rundir.py)
    assert main(["evaluate", str(tmp_path / "run")]) == 0


def test_the_family_declares_what_the_scenario_may_ask_of_it(write_scenario):
    with pytest.raises(ConfigError, match="record-level DP-SGD"):
        compose.load(write_scenario(model={"family": "toy_test"},
                                    privacy={"record": {"enabled": True, "noise_multiplier": 1.0}}))
    with pytest.raises(ConfigError, match="adapter"):
        compose.load(write_scenario(model={"family": "toy_test"},
                                    federation={"row_weight": "presence"},
                                    privacy={"user_level": True, "noise_multiplier": 1.0, "denominator": "public",
                                             "delta": 1e-5}))


def test_word2vec_declares_text_row_tables_and_record_dp():
    cfg = compose.load(None)
    fam = models.make(cfg)
    assert (fam.data_kind, fam.row_tables, fam.record_dp) == ("text", fam.tables, True)
    assert sources.make(fam.data_kind).kind == "text"
    with pytest.raises(ConfigError, match="unknown data source 'nope'"):
        sources.make("nope")


def test_exporting_a_format_the_family_lacks_is_one_line(tmp_path, write_scenario, capsys):
    cfg = compose.load(write_scenario(model={"family": "toy_test"}, federation={"rounds": 1}))
    federate(InProcessGrid(cfg.partition.num_clients), cfg, tmp_path / "run", progress=False)
    cfg.save(tmp_path / "run" / "config.toml")
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "x.bin"), "--format", "fasttext-bin"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "toy_test" in err[0] and not (tmp_path / "x.bin").exists()
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "x.txt")]) == 0
    assert json.loads((tmp_path / "run" / "report.json").read_text())["run"]["family"] == "toy_test"
