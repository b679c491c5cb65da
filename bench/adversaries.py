"""Attack success and clean quality, with and without a robust rule (docs/BENCHMARKS.md,
"Adversaries and robust aggregation").

Runs variants of simulations/scenarios/targeted_poisoning.toml (built-in corpus, 10 iid
clients, 10 rounds, SGNS dim 100) through the real server loop (fedembed.federation.server.run)
on an in-process grid (tests/test_aggregate.py's InProcessGrid: client code called directly,
no Ray), so a variant costs its training, not Ray's start-up. The data are prepared once and
copied into each variant's directory. One JSON line per variant in OUT/results.jsonl;
finished variants are skipped, so rerunning finishes a partial sweep.

    python bench/adversaries.py                     # every variant (~5 min each on an idle 2-core machine)
    python bench/adversaries.py tp_rowwise,tp_median --rounds 5
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = 1, 1, 0  # what a Flower runtime sets

from test_aggregate import InProcessGrid  # noqa: E402
from fedembed import compose  # noqa: E402
from fedembed.federation import server  # noqa: E402

SCENARIO = ROOT / "simulations/scenarios/targeted_poisoning.toml"
TP = {"adversary.attack": "targeted_poison", "adversary.fraction": 0.1}
SYBIL = {"adversary.attack": "sybil", "adversary.fraction": 0.3}
CLEAN = {"adversary.fraction": 0.0}
VARIANTS: dict[str, dict] = {
    "clean_rowwise": CLEAN,
    "tp_rowwise": TP,
    "tp_median": {**TP, "federation.aggregate": "median"},
    "tp_normbound_rows": {**TP, "federation.aggregate": "norm_bound", "robust.norm_bound": 100.0,
                          "robust.row_bound": 0.5},
    "tp_trimmed": {**TP, "federation.aggregate": "trimmed_mean", "robust.trim_fraction": 0.2},
    "tp_krum": {**TP, "federation.aggregate": "krum", "robust.byzantine": 2},
    "tp_normbound_median": {**TP, "federation.aggregate": "norm_bound"},
    "sybil_rowwise": SYBIL,
    "sybil_krum": {**SYBIL, "federation.aggregate": "krum", "robust.byzantine": 2},
    "sybil_median": {**SYBIL, "federation.aggregate": "median"},
    "scaling_rowwise": {"adversary.attack": "scaling", "adversary.fraction": 0.2},
    "scaling_median": {"adversary.attack": "scaling", "adversary.fraction": 0.2, "federation.aggregate": "median"},
    "clean_median": {**CLEAN, "federation.aggregate": "median"},
    "signflip_rowwise": {"adversary.attack": "sign_flip", "adversary.fraction": 0.2},
    "signflip_trimmed": {"adversary.attack": "sign_flip", "adversary.fraction": 0.2,
                         "federation.aggregate": "trimmed_mean", "robust.trim_fraction": 0.2},
    "gauss_rowwise": {"adversary.attack": "gaussian_noise", "adversary.fraction": 0.2, "adversary.noise_std": 0.5},
    "gauss_krum": {"adversary.attack": "gaussian_noise", "adversary.fraction": 0.2, "adversary.noise_std": 0.5,
                   "federation.aggregate": "krum", "robust.byzantine": 2},
    "clean_trimmed": {**CLEAN, "federation.aggregate": "trimmed_mean", "robust.trim_fraction": 0.2},
    "signflip_median": {"adversary.attack": "sign_flip", "adversary.fraction": 0.2, "federation.aggregate": "median"},
    "clean_krum": {**CLEAN, "federation.aggregate": "krum", "robust.byzantine": 2},
    "clean_normbound_rows": {**CLEAN, "federation.aggregate": "norm_bound", "robust.norm_bound": 100.0,
                             "robust.row_bound": 0.5},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="?", default="all", help="comma-separated names, or all")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", default="bench/out/adversaries")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    prepared = out / "prepared"
    for name in names:
        run = out / f"{name}_r{args.rounds}"
        if (run / "report.json").exists():
            continue
        if prepared.is_dir() and not (run / "data").exists():
            run.mkdir(parents=True, exist_ok=True)
            shutil.copy(prepared / "vocab.tsv", run / "vocab.tsv")
            shutil.copytree(prepared / "data", run / "data")
        overrides = {"federation.rounds": args.rounds, "eval.baseline": False, "name": name, **VARIANTS[name]}
        cfg = compose.load(SCENARIO, overrides)
        t0 = time.time()
        rep = server.run(InProcessGrid(cfg.partition.num_clients), cfg, run, progress=False)
        if not prepared.is_dir():
            prepared.mkdir()
            shutil.copy(run / "vocab.tsv", prepared / "vocab.tsv")
            shutil.copytree(run / "data", prepared / "data")
        q = rep["quality"]
        row = {"name": name, "seconds": round(time.time() - t0), "wordsim353": q["wordsim353"]["spearman"],
               "simlex999": q["simlex999"]["spearman"], "analogy": q["analogy"]["accuracy"],
               "attack_after": rep.get("attack", {}).get("after"), "aggregation": rep["aggregation"]}
        print(json.dumps(row), flush=True)
        with open(out / "results.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        shutil.rmtree(run / "data")


if __name__ == "__main__":
    main()
