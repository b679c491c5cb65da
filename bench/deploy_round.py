"""Round time of the deployed federation against the same run in simulation.

The same scenario (clients, data, vocabulary, model, rounds) runs twice:
  * simulation: `fedembed.simulate` (Flower's simulation runtime, Ray, in-process);
  * deployment: one `flower-superlink` and N SuperNode processes on loopback with TLS and
    SuperNode authentication, the run submitted with `flwr run` (fedembed/deploy/federation.py),
    once per node runtime: Flower's `flower-supernode` (a fresh `flwr-clientapp` process per
    message) and fedembed's in-process node (fedembed/deploy/node_runtime.py).
Both write metrics.jsonl with each round's wall seconds as the ServerApp sees them
(broadcast, client training, replies, aggregation); this script compares them round by
round and their medians. Target: deployed ≤ 1.2 × simulated.

    python bench/deploy_round.py                  # bench/data/corpus/builtin (0.5M tokens), 3 clients, 3 rounds
    python bench/deploy_round.py --runtime inprocess flower --state memory --rounds 5 --tag runtimes
    python bench/deploy_round.py --runtime inprocess --state memory --rounds 6 --share-ahead off --tag no_ahead
    python bench/deploy_round.py --corpus bench/data/corpus/builtin --vocab bench/data/vocab.tsv --tag small
    python bench/deploy_round.py --corpus bench/data/corpus --vocab bench/data/vocab.tsv --tag full
    python bench/deploy_round.py --corpus bench/data/corpus --vocab bench/data/vocab.tsv --local-epochs 3 --tag full_e3

`--corpus builtin` (fedembed's built-in corpus) is parsed by gensim's WikiCorpus, whose
forked helper processes break a ServerApp under the deployment runtime (docs/DEPLOY.md,
"Limits"); bench/data/corpus/builtin is the same text as plain files (bench/get_corpus.sh).

The deployed run is not log-streamed (`flwr run --stream` polls the SuperLink all along): the
script waits for its report.json. `--state memory` keeps the SuperLink's state in memory
(Flower's default; `fedembed deploy`'s), `file` in superlink.db.

Writes bench/out/deploy_round[_TAG].json. Loopback only; every process started is stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on 127.0.0.1 (see federated_quality.py)


def scenario_text(args: argparse.Namespace) -> str:
    corpus = "builtin" if args.corpus == "builtin" else str(Path(args.corpus).resolve())
    vocab = "builtin" if args.vocab == "builtin" else str(Path(args.vocab).resolve())
    return f'''name = "deploy-round-bench"
seed = 0
[data]
corpus = {json.dumps(corpus)}
[vocab]
source = {json.dumps(vocab)}
min_count = {args.min_count}
[partition]
name = "iid"
num_clients = {args.clients}
[federation]
rounds = {args.rounds}
[model]
dim = {args.dim}
[train]
local_epochs = {args.local_epochs}
[eval]
baseline = false
[secagg]
share_ahead = {str(args.share_ahead == "on").lower()}
'''


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def round_seconds(run_dir: Path) -> list[float]:
    return [float(r["seconds"]) for r in _rows(run_dir) if "seconds" in r]


def stage_seconds(run_dir: Path) -> dict[str, list[float]]:
    """SecAgg+ stage → its exchange's wall seconds, round by round (0 where a round skipped it)."""
    rows = [r.get("secagg", {}).get("seconds", {}) for r in _rows(run_dir) if "seconds" in r]
    return {st: [round(float(r.get(st, 0.0)), 4) for r in rows] for st in sorted({k for r in rows for k in r})}


def run_simulated(scenario: Path, out: Path) -> tuple[list[float], float]:
    from fedembed.simulation import simulate

    t0 = time.perf_counter()
    simulate(str(scenario), str(out), progress=False)
    return round_seconds(out), time.perf_counter() - t0


def client_train_seconds(logs: Path) -> dict[int, list[float]]:
    """Round -> each deployed client's own training seconds, from the SuperNodes' logs."""
    found: dict[int, list[float]] = {}
    for log in sorted(logs.glob("supernode-*.log")):
        for m in re.finditer(r"round (\d+): trained in ([\d.]+)s", log.read_text(errors="replace")):
            found.setdefault(int(m.group(1)), []).append(float(m.group(2)))
    return found


def run_deployed(scenario: Path, out: Path, work: Path, clients: int, runtime: str,
                 persist: bool) -> tuple[list[float], float, float]:
    from fedembed.deploy.federation import LocalFederation

    fed = LocalFederation(work, clients, runtime=runtime, persist=persist)
    try:
        t0 = time.perf_counter()
        fed.start()
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        fed.run({"scenario": str(scenario), "out": str(out)}, timeout=3600, done=out / "report.json")
        total = time.perf_counter() - t0
    finally:
        left = fed.stop()
        if left:
            print(f"warning: still running after stop: {left}", file=sys.stderr)
    return round_seconds(out), total, startup


def main() -> int:
    from fedembed.deploy.node_runtime import RUNTIMES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(ROOT / "bench/data/corpus/builtin"))
    ap.add_argument("--vocab", default=str(ROOT / "bench/data/vocab.tsv"))
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dim", type=int, default=50)
    ap.add_argument("--local-epochs", type=int, default=1, help="more client work per round")
    ap.add_argument("--work", default="/tmp/fedembed-deploy-bench", help="scratch directory (deleted first)")
    ap.add_argument("--runtime", nargs="+", default=list(RUNTIMES), choices=RUNTIMES,
                    help="SuperNode runtime(s) to deploy with: flower-supernode, fedembed's in-process node")
    ap.add_argument("--state", choices=["file", "memory"], default="file",
                    help="SuperLink state: a database file (survives restarts; `fedembed deploy`'s) or Flower's "
                         "default in-memory state")
    ap.add_argument("--share-ahead", choices=["on", "off"], default="on",
                    help="secagg.share_ahead: a round's share stage rides the previous round's unmask exchange")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    scenario = work / "scenario.toml"
    scenario.write_text(scenario_text(args), encoding="utf-8")

    load = {"before": os.getloadavg()[0]}
    sim, sim_total = run_simulated(scenario, work / "sim")
    load["after_simulated"] = os.getloadavg()[0]
    result: dict = {
        "setting": {k: getattr(args, k) for k in ("corpus", "vocab", "min_count", "clients", "rounds", "dim",
                                                  "local_epochs", "state", "share_ahead")},
        "simulated_round_s": sim, "simulated_stage_s": stage_seconds(work / "sim"),
        "median_simulated_s": statistics.median(sim), "simulated_total_s": sim_total,
        "deployed": {}, "load_avg_1min": load, "cpu_count": os.cpu_count(),
    }
    for runtime in args.runtime:
        fed_dir = work / f"fed-{runtime}"
        dep, dep_total, startup = run_deployed(scenario, work / f"deployed-{runtime}", fed_dir, args.clients,
                                               runtime, args.state == "file")
        load[f"after_{runtime}"] = os.getloadavg()[0]
        trained = client_train_seconds(fed_dir / "logs")
        slowest = [max(trained.get(r + 1, [0.0])) for r in range(len(dep))]
        result["deployed"][runtime] = {
            "round_s": dep, "ratio_per_round": [d / s for d, s in zip(dep, sim)],
            "median_round_s": statistics.median(dep), "median_ratio": statistics.median(dep) / statistics.median(sim),
            "run_total_s": dep_total, "startup_s": startup, "slowest_client_train_s": slowest,
            "overhead_s": [d - t for d, t in zip(dep, slowest)],
            "stage_s": stage_seconds(work / f"deployed-{runtime}"),
        }
    out = ROOT / "bench" / "out" / f"deploy_round{'_' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    for runtime, r in result["deployed"].items():
        print(f"median round: simulated {result['median_simulated_s']:.2f}s, deployed ({runtime} SuperNodes) "
              f"{r['median_round_s']:.2f}s, ratio {r['median_ratio']:.2f} (target <= 1.2)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
