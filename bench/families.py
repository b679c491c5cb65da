"""The embedding families' shipped scenarios, federated next to their centralized baselines in the same run.

Runs a scenario on the in-process grid of the tests (the production ClientApp, called one client
after another: no Ray) and prints report.json's headline figures (federated, and each baseline the
family trains in the same run), wall time per round and bytes sent up:

- simulations/scenarios/mf_debian.toml (the default): user/item embeddings on Debian's package
  index from `apt-get update` (packages as users, their dependencies as items, BPR): Recall@10 and
  NDCG@10 of the federated model (user rows rebuilt on each client), of the same model trained
  centrally, and of a popularity ranking;
- simulations/scenarios/fasttext.toml: subword vectors on the built-in corpus, a fifth of the
  word-similarity lists' words held out: WordSim353/SimLex999 in the vocabulary and on the pairs
  holding held-out words (`oov.*`), next to gensim FastText.

    apt-get update                                   # /var/lib/apt/lists/*Packages*
    python bench/families.py                         # mf_debian as shipped (20 clients, 20 rounds, SecAgg+)
    python bench/families.py --config simulations/scenarios/fasttext.toml --tag fasttext
    python bench/families.py --rounds 5 --set secagg.enabled=false --tag quick
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "simulations" / "scenarios" / "mf_debian.toml"))
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--tag", default="default")
    args = ap.parse_args()

    import torch
    from flwr.supercore.task_identity import TaskIdentity

    from fedembed import compose, metrics
    from fedembed.cli import parse_value
    from fedembed.run import federate
    from inprocess_grid import InProcessGrid

    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = 1, 1, 0   # what a runtime sets
    torch.set_num_threads(1)
    overrides = {k: parse_value(v) for k, _, v in (s.partition("=") for s in args.set)}
    if args.rounds:
        overrides["federation.rounds"] = args.rounds
    cfg = compose.load(args.config, overrides)
    out = ROOT / "bench" / "out" / "families" / args.tag
    t0 = time.perf_counter()
    report = federate(InProcessGrid(cfg.partition.num_clients), cfg, out, progress=False)
    cfg.save(out / "config.toml")   # as `fedembed simulate` leaves it: `fedembed evaluate | export | serve` read it
    wall = time.perf_counter() - t0
    rows = [r for r in metrics.read(out) if "event" not in r]
    result = {"scenario": cfg.name, "overrides": overrides, "family": cfg.model.family,
              "users": report["quality"].get("users"), "rows": report["run"]["vocab_size"],
              "tokens_or_interactions": report["run"]["tokens"],
              "clients": cfg.partition.num_clients, "rounds": len(rows), "headline": report["headline"],
              "ratio_to_baseline": report.get("ratio_to_baseline"),
              "round_seconds_mean": sum(r["seconds"] for r in rows) / max(len(rows), 1),
              "bytes_up_per_round": report["run"].get("bytes_up", 0) / max(len(rows), 1),
              "baseline_seconds": {k: v.get("seconds") for k, v in report.get("baseline", {}).items()},
              "wall_seconds": wall}
    (out / "bench.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
