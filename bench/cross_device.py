"""Privacy–utility at 100,000 users: one point of docs/BENCHMARKS.md's cross-device table.

    bash bench/get_cross_device.sh                       # once: the corpus (240,548 users, 7.75M tokens)
    python bench/cross_device.py NAME --set privacy.target_epsilon=8 [--set KEY=VALUE ...]

Each point is simulations/scenarios/cross_device_dp.toml with the overrides given, federated
through the production ClientApp handlers (fedembed.run.federate) over the in-process grid of
the tests (tests/inprocess_grid.py: two pool nodes, Flower's Message objects, no Ray) — at two
messages a round Flower's transport is not what is measured, and the grid keeps no replies
(a round's replies are the tables). The data are prepared once (`--prepared DIR`, reused by
every point: the partition and shards depend only on the data keys). Appends one line to
bench/out/cross_device/results.jsonl; the run directory keeps metrics.jsonl and report.json.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
SCENARIO = ROOT / "simulations" / "scenarios" / "cross_device_dp.toml"


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = {"true": True, "false": False}.get(raw, raw)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "cross_device"))
    ap.add_argument("--prepared", default="", help="a run dir whose vocab.tsv and data/ to reuse")
    args = ap.parse_args()

    from flwr.supercore.task_identity import TaskIdentity
    from inprocess_grid import InProcessGrid

    from fedembed import compose
    from fedembed.run import federate

    TaskIdentity._run_id = 1
    TaskIdentity._task_id = 1
    TaskIdentity._node_id = 0
    os.chdir(ROOT)                       # the scenario names its data relative to the repository
    over = parse_set(args.set)
    cfg = compose.load(SCENARIO, over)
    run = Path(args.out) / args.name
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    if args.prepared:
        for f in ("vocab.tsv", "data"):
            os.symlink(Path(args.prepared).resolve() / f, run / f)
    cfg.save(run / "config.toml")
    t0 = time.time()
    rep = federate(InProcessGrid(cfg.simulation.nodes, record=False), cfg, run, progress=False)
    q, base = rep["quality"], rep.get("baseline", {})
    row = {"name": args.name, "over": over, "seconds": round(time.time() - t0),
           "wordsim353": q["wordsim353"]["spearman"], "simlex999": q["simlex999"]["spearman"],
           "neighbour_overlap": q.get("neighbour_overlap"), "epsilon": rep["privacy"]["epsilon"],
           "delta": rep["privacy"].get("delta"),
           "gensim": {k: base.get("gensim", {}).get(k, {}).get("spearman") for k in ("wordsim353", "simlex999")},
           "public_only": {**{k: base.get("public_only", {}).get(k, {}).get("spearman")
                              for k in ("wordsim353", "simlex999")},
                           "neighbour_overlap": base.get("public_only", {}).get("neighbour_overlap")}}
    print(json.dumps(row), flush=True)
    with open(Path(args.out) / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
