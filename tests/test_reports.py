"""Per-run reports: summary.csv, PNG plots (quality per round, utility vs ε, attack figures),
partition statistics in report.json, per-round quality in metrics.jsonl."""
from __future__ import annotations

import csv
import json

import pytest

from fedembed import compose
from fedembed import metrics, plots, summary
from fedembed.run import federate
from inprocess_grid import InProcessGrid

PNG = b"\x89PNG\r\n\x1a\n"


def _report(**extra):
    base = {"run": {"name": "x", "partition": "iid", "clients": 3, "family": "sgns", "seconds": 2.0,
                    "partition_stats": {"summary": {"label_tv_mean": 0.2, "vocab_overlap": 0.4, "tokens_cv": 0.1}}},
            "quality": {"wordsim353": {"spearman": 0.3}, "simlex999": {"spearman": 0.1},
                        "analogy": {"accuracy": 0.05}},
            "baseline": {"gensim": {"wordsim353": {"spearman": 0.35}, "simlex999": {"spearman": 0.12}}},
            "ratio_to_baseline": {"wordsim353.spearman": 0.3 / 0.35},
            "privacy": {"epsilon": None, "delta": None, "unit": None, "mechanism": "none"}}
    base.update(extra)
    return base


def _rounds(n=3, private=False, dropped=0):
    rows = []
    for r in range(1, n + 1):
        row = {"round": r, "train_loss": 3.0 - r * 0.1, "clients": 4, "clients_ok": 4 - dropped, "dropped": dropped,
               "timed_out": 0, "failed": dropped, "rejected": 0, "quality": {"wordsim353": 0.1 * r, "simlex999": 0.05 * r}}
        if private:
            row["privacy"] = {"round": r, "units": {"user": {"epsilon": 1.5 * r, "delta": 1e-5}}}
        rows.append(row)
    return rows


def test_flatten_numbers_and_row():
    assert summary.flatten_numbers({"a": {"b": 1, "c": True, "d": [1, 2], "e": float("nan"), "f": 0.5}, "g": "s"}) == \
        {"a.b": 1.0, "a.f": 0.5}
    r = summary.row(_report(attack={"after": {"cosine": 0.8, "rank": 2}, "attack": "targeted_poison"},
                            privacy_attacks={"membership": {"auc": 0.61}}), _rounds(dropped=1))
    assert r["wordsim353"] == 0.3 and r["baseline_wordsim353"] == 0.35 and r["dropped"] == 3 and r["failed"] == 3
    assert r["ratio_wordsim353"] == pytest.approx(0.3 / 0.35)
    assert r["attack.after.cosine"] == 0.8 and r["privacy_attacks.membership.auc"] == 0.61
    assert r["label_tv_mean"] == 0.2 and r["rounds_done"] == 3


def test_plots_for_a_plain_run_draw_only_what_is_present(tmp_path):
    made = plots.for_run(tmp_path, _report(), [{"round": 1, "train_loss": 2.0}, {"round": 2, "train_loss": 1.5}])
    assert [p.name for p in made] == ["quality.png"]
    assert (tmp_path / "quality.png").read_bytes()[:8] == PNG


def test_plots_for_a_private_attacked_run_with_dropouts(tmp_path):
    report = _report(privacy={"epsilon": 4.5, "delta": 1e-5, "unit": "user", "mechanism": "gaussian"},
                     attack={"after": {"cosine": 0.8, "rank": 2}, "before": {"initial": {"cosine": 0.01}}},
                     privacy_attacks={"membership": {"auc": 0.61}}, aggregation={"rule": "trimmed_mean"})
    made = plots.for_run(tmp_path, report, _rounds(private=True, dropped=1))
    assert sorted(p.name for p in made) == ["attack.png", "quality.png", "utility_vs_epsilon.png"]
    assert all(p.read_bytes()[:8] == PNG for p in made)


def test_sweep_plot_one_and_two_keys(tmp_path):
    rows = [{"_point": {"privacy.noise_multiplier": z}, "wordsim353": 0.3 - z / 10, "simlex999": 0.1,
             "epsilon": 10 / (z + 0.1), "attack.after.cosine": 0.9 - z / 5} for z in (0.5, 1.0, 2.0)]
    p = plots.for_sweep(tmp_path / "one.png", ["privacy.noise_multiplier"], [[0.5, 1.0, 2.0]], rows)
    assert p.read_bytes()[:8] == PNG
    rows2 = [{"_point": {"federation.aggregate": a, "adversary.fraction": f}, "wordsim353": 0.2}
             for a in ("rowwise", "median") for f in (0.0, 0.2)]
    p2 = plots.for_sweep(tmp_path / "two.png", ["federation.aggregate", "adversary.fraction"],
                         [["rowwise", "median"], [0.0, 0.2]], rows2)
    assert p2.read_bytes()[:8] == PNG


def test_a_run_writes_summary_csv_plots_partition_stats_and_quality_per_round(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(partition={"name": "quantity", "num_clients": 3, "sigma": 1.0},
                                         federation={"rounds": 2}, eval={"every_round": True},
                                         behaviour={"dropout": 0.2}))
    out = tmp_path / "run"
    grid = InProcessGrid(3, workers=8)
    try:
        report = federate(grid, cfg, out, progress=False)
    finally:
        grid.close()
    rows = metrics.read(out)
    assert all(set(r["quality"]) == {"wordsim353", "simlex999"} for r in rows)
    assert all(-1 <= r["quality"]["wordsim353"] <= 1 for r in rows)
    assert all("dropped" in r and "timed_out" in r for r in rows)
    stats = report["run"]["partition_stats"]
    assert stats["partitioner"] == "quantity" and len(stats["clients"]) == 3
    assert stats == json.loads((out / "report.json").read_text())["run"]["partition_stats"]
    assert [c["tokens"] for c in stats["clients"]] == json.loads((out / "data" / "manifest.json").read_text())["tokens"]
    with open(out / "summary.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["partition"] == "quantity" and float(row["wordsim353"]) == report["quality"]["wordsim353"]["spearman"]
    assert int(row["dropped"]) == sum(r["dropped"] for r in rows)
    assert (out / "quality.png").read_bytes()[:8] == PNG
    assert not (out / "utility_vs_epsilon.png").exists() and not (out / "attack.png").exists()


def test_a_broken_plot_never_loses_the_run(tmp_path, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("no display")

    monkeypatch.setattr(plots, "for_run", boom)
    summary.write(tmp_path, _report())
    plots.write(tmp_path, _report())
    assert (tmp_path / "summary.csv").is_file()
    assert any("plots for" in r.getMessage() and "no display" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("n", [3, 150])
def test_report_keeps_per_client_partition_rows_only_for_small_federations(tmp_path, n):
    from fedembed.data.partition import stats as stats_mod

    (tmp_path / stats_mod.STATS).write_text(json.dumps({"summary": {}, "clients": [{"client": c} for c in range(n)]}))
    got = stats_mod.for_report(tmp_path)
    assert isinstance(got["clients"], list) == (n <= 100)
