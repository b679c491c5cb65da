"""Scale: framework overhead of `fedembed simulate` against the bare in-process floor.

One scenario (default simulations/scenarios/scale_1000_clients.toml: 1,000 IID clients of the
1.7M-token bench corpus, 100 a round), measured two ways in the same process:

* **floor** — the same rounds replayed in a plain Python loop: for every sampled client
  `fedembed.federation.client.train_round` (the function the ClientApp calls: shard load,
  local SGNS, delta, update pipeline) and the server's `Accumulator` + row-wise division
  (with sparse uploads on, the client's rows are packed and added in place, as the
  framework's server does), with no Flower, no Ray, no messages. One process, one thread:
  the compute-only floor.
* **framework** — `fedembed.simulate` (Flower's simulation runtime on Ray), its per-round
  `seconds` from metrics.jsonl (sending the round's messages → update applied).

The simulation runs cores / num_cpus_per_client clients at once, the floor one, so the wall
ratio is given against the serial floor and against the floor divided by the number of
clients the simulation runs in parallel (perfect parallel speed-up, no framework): the second
is the fair one. CPU seconds are compared too (the simulation's whole process tree, sampled
from /proc when a round ends, against the floor's process time): on a shared machine wall
time mostly measures the neighbours. Round 1 (actor start-up, imports) is left out of the
means. The floor runs after the first simulation and after the last (the faster is kept); every
simulation must give the floor's tables (checked, float tolerance).

    bash bench/get_corpus.sh        # once, if bench/data/ is missing
    python bench/scale.py --rounds 4 --json bench/out/scale.json
    python bench/scale.py --variant federation.max_in_flight=0,federation.sparse_upload=false  # and the old path
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "simulations" / "scenarios" / "scale_1000_clients.toml"
CORPUS = ROOT / "bench" / "data" / "corpus"


def ensure_corpus() -> None:
    """Build bench/data/ (Debian packages + assembly) when the scenario's corpus is missing."""
    if not (CORPUS.is_dir() and (ROOT / "bench" / "data" / "vocab.tsv").is_file()):
        subprocess.run(["bash", str(ROOT / "bench" / "get_corpus.sh")], check=True, cwd=ROOT)


def floor(run_dir: Path, rounds: int) -> dict:
    """Replay the run's rounds in this process: the same client and server functions, no framework."""
    import torch

    from fedembed import compose, models
    from fedembed.aggregate import divide_rows
    from fedembed.aggregate.accumulate import Accumulator
    from fedembed.data.shards import Manifest
    from fedembed.federation import client, server, sparse, wire
    from fedembed.vocab import Vocabulary

    cfg = compose.load(run_dir / "config.toml")
    torch.set_num_threads(1)
    vocab = Vocabulary.load(run_dir / "vocab.tsv")
    active = Manifest.load(run_dir / "data" / "manifest.json").active
    tables = models.make(cfg).init_tables(len(vocab), cfg.seed)
    shapes = {k: v.shape for k, v in tables.items()}
    per_round, cpu_per_round = [], []
    for rnd in range(1, rounds + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        lr_start, lr_end = server.learning_rates(cfg, rnd)
        ins = wire.TrainInstruction(rnd, lr_start, lr_end, cfg.seed, cfg.to_dict(), str(run_dir / "data"))
        acc = Accumulator(shapes)
        for p in server.sample_clients(cfg, active, rnd):
            u = client.train_round(tables, vocab.counts, ins, p, pipeline=compose.client_stages)
            if cfg.federation.sparse_upload:  # the server's cheapest path, as the framework takes it
                values, weights, rows = sparse.pack(u.tables, u.weights)
                acc.add_rows(values, weights, rows)
            else:
                acc.add(u.tables, u.weights)
        for name, d in divide_rows(acc.sums, acc.weights).items():
            tables[name] += cfg.federation.server_lr * d
        per_round.append(time.perf_counter() - t0)
        cpu_per_round.append(time.process_time() - c0)
    return {"seconds": per_round, "cpu_seconds": cpu_per_round, "tables": tables}


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system, reaped children included) of `root` and all its descendants:
    the driver, Ray's GCS, raylet and the actors it starts. Linux /proc only."""
    parent, cpu = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        cpu[pid] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(cpu.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


class RoundCpu(threading.Thread):
    """Samples the process tree's CPU seconds whenever metrics.jsonl gains a line (a round ended),
    so the framework's CPU per round can be set against the floor's: wall time on a shared
    2-core machine mostly measures the neighbours, CPU time much less."""

    def __init__(self, metrics_path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.marks, self.stop = metrics_path, [], threading.Event()

    def run(self) -> None:
        seen = 0
        while not self.stop.wait(0.05):
            try:
                n = self.path.read_bytes().count(b"\n")
            except OSError:
                continue
            if n != seen:
                seen = n
                self.marks.append((n, tree_cpu(os.getpid())))

    def per_round(self) -> list[float]:
        """CPU seconds of rounds 2..R (round 1 has no start mark)."""
        return [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:]) if b[0] == a[0] + 1]


def simulate(cfg, run_dir: Path) -> dict:
    import fedembed
    from fedembed import checkpoint, metrics

    sampler = RoundCpu(run_dir / metrics.METRICS)
    sampler.start()
    t0 = time.perf_counter()
    try:
        fedembed.simulate(cfg, run_dir, progress=False)
    finally:
        sampler.stop.set()
    wall = time.perf_counter() - t0
    rows = [r for r in metrics.read(run_dir) if "seconds" in r]
    return {"seconds": [r["seconds"] for r in rows], "wall": wall, "cpu_seconds": sampler.per_round(),
            "bytes_up_per_client": [r["bytes_up"] / max(r["clients_ok"], 1) for r in rows],
            "bytes_down_per_client": [r["bytes_down"] / max(r["clients"], 1) for r in rows],
            "tables": checkpoint.load(run_dir).tables}


def steady(xs: list[float]) -> float:
    """Mean over rounds 2..R (round 1 pays start-up); the single round when there is one."""
    return float(np.mean(xs[1:] if len(xs) > 1 else xs))


def variant_overrides(spec: str) -> dict:
    """"federation.max_in_flight=0,federation.sparse_upload=false" -> overrides."""
    from fedembed.cli import parse_value  # KEY=VALUE as `fedembed simulate --set` reads it

    out = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        out[key.strip()] = parse_value(value.strip())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=SCENARIO)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="scenario override (all runs)")
    ap.add_argument("--variant", action="append", default=[], metavar="K=V,K=V",
                    help="also run the simulation with these overrides (e.g. the settings before an "
                         "optimisation), in the same process; one report each")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "scale")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from fedembed import compose

    os.chdir(ROOT)  # the scenario's corpus paths are relative to the repository root
    ensure_corpus()
    base = {"federation.rounds": args.rounds, **variant_overrides(",".join(args.set))}
    results = []
    floors: list[dict] = []
    for i, spec in enumerate(["", *args.variant]):
        cfg = compose.load(args.config, {**base, **variant_overrides(spec)})
        run_dir = args.out / f"run{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        print(f"scale: {cfg.partition.num_clients} clients, {cfg.federation.clients_per_round} a round, "
              f"{args.rounds} rounds; overrides {args.set} {spec}", flush=True)
        sim = simulate(cfg, run_dir)
        print(f"framework per round {['%.2f' % s for s in sim['seconds']]} (whole simulate {sim['wall']:.0f}s)",
              flush=True)
        if not floors:  # once after the first simulation (it writes the shards), once after the last
            floors.append(floor(run_dir, args.rounds))
        for name in sim["tables"]:
            np.testing.assert_allclose(sim["tables"][name], floors[0]["tables"][name], rtol=1e-4, atol=1e-5,
                                       err_msg=f"simulation and floor disagree on {name}")
        results.append((spec, cfg, sim))
    floors.append(floor(args.out / "run0", args.rounds))
    for f in floors:
        print(f"floor per round {['%.2f' % s for s in f['seconds']]}", flush=True)
    floor_s = min(steady(f["seconds"]) for f in floors)
    floor_cpu = min(steady(f["cpu_seconds"]) for f in floors)
    report = []
    for spec, cfg, sim in results:
        parallel = max(1, min(os.cpu_count() or 1, int((os.cpu_count() or 1) / cfg.simulation.num_cpus_per_client)))
        framework_s = steady(sim["seconds"])
        framework_cpu = float(np.mean(sim["cpu_seconds"])) if sim["cpu_seconds"] else float("nan")
        report.append({
            "variant": spec or "(scenario)", "overrides": args.set, "clients": cfg.partition.num_clients,
            "clients_per_round": cfg.federation.clients_per_round, "rounds": args.rounds,
            "cores": os.cpu_count(), "clients_in_parallel": parallel,
            "framework_round_seconds": sim["seconds"], "simulate_wall_seconds": sim["wall"],
            "floor_round_seconds": [f["seconds"] for f in floors],
            "floor_round_cpu_seconds": [f["cpu_seconds"] for f in floors],
            "framework_s": framework_s, "floor_serial_s": floor_s, "floor_parallel_s": floor_s / parallel,
            "ratio_to_serial_floor": framework_s / floor_s,
            "ratio_to_parallel_floor": framework_s / (floor_s / parallel),
            "framework_cpu_round_seconds": sim["cpu_seconds"], "framework_cpu_s": framework_cpu,
            "floor_cpu_s": floor_cpu, "cpu_ratio": framework_cpu / floor_cpu,
            "bytes_up_per_client": float(np.mean(sim["bytes_up_per_client"])),
            "bytes_down_per_client": float(np.mean(sim["bytes_down_per_client"])),
        })
        print(json.dumps({k: v for k, v in report[-1].items() if not isinstance(v, list)}, indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
