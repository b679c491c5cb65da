"""A run's headline figures as one flat row: summary.csv in the run directory, and the row a
sweep's summary table is built from. Written by report.finalize right after report.json
(the plots, fedembed/plots.py, read the same flattened figures)."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from fedembed import metrics

SUMMARY_CSV = "summary.csv"
ATTACK_SECTIONS = ("attack", "privacy_attacks")   # report.json sections plotted as attack success


def flatten_numbers(d: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number (not a bool) under `d`, keyed by its dotted path; lists are skipped."""
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten_numbers(v, f"{prefix}{k}."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool) and math.isfinite(d):
        out[prefix.rstrip(".")] = float(d)
    return out


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def row(report: dict[str, Any], rounds: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Headline figures of one run; attack figures (whatever the attack sections hold) at the end."""
    rounds = [r for r in (rounds or []) if "event" not in r]
    run = report.get("run", {})
    out: dict[str, Any] = {
        "name": run.get("name"), "partition": run.get("partition"), "clients": run.get("clients"),
        "rounds_done": len(rounds) or None, "family": run.get("family"),
        "wordsim353": _get(report, "quality.wordsim353.spearman"),
        "simlex999": _get(report, "quality.simlex999.spearman"),
        "analogy": _get(report, "quality.analogy.accuracy"),
        "baseline_wordsim353": _get(report, "baseline.gensim.wordsim353.spearman"),
        "ratio_wordsim353": (report.get("ratio_to_baseline") or {}).get("wordsim353.spearman"),
        "epsilon": _get(report, "privacy.epsilon"), "delta": _get(report, "privacy.delta"),
        "final_train_loss": run.get("final_train_loss"), "seconds": run.get("seconds"),
        "bytes_up": run.get("bytes_up"),
        "label_tv_mean": _get(run, "partition_stats.summary.label_tv_mean"),
        "vocab_overlap": _get(run, "partition_stats.summary.vocab_overlap"),
        "tokens_cv": _get(run, "partition_stats.summary.tokens_cv"),
    }
    for key, value in ((report.get("headline") or {}).get("federated") or {}).items():
        if key.split(".")[0] not in out:   # a family's own headline figures (recall@10, oov.simlex999.spearman, …)
            out[key] = value
    for key in ("dropped", "timed_out", "failed", "rejected"):
        out[key] = sum(int(r.get(key, 0)) for r in rounds) if rounds else None
    for section in ATTACK_SECTIONS:
        out.update({f"{section}.{k}": v for k, v in flatten_numbers(report.get(section)).items()})
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Columns in first-seen order over all rows; missing cells empty."""
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(cols), restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    tmp.replace(path)


def write(run_dir: Path, report: dict[str, Any]) -> None:
    """summary.csv: the run's headline row."""
    run_dir = Path(run_dir)
    write_csv(run_dir / SUMMARY_CSV, [row(report, metrics.read(run_dir))])
