"""Federated quality: 10 simulated clients against centralized gensim on the same tokens.

Runs `fedembed.simulate` once per partition (IID and natural, no DP) on the corpus that
bench/get_corpus.sh assembles (~1.7M tokens of real English: the built-in Lee news and
Wikipedia sample, Debian's fortune databases, the King James Bible), with the vocabulary
it counts (bench/data/vocab.tsv, min_count 5), and reads each run's report.json:
WordSim353 / SimLex999 Spearman of the federated vectors, of gensim Word2Vec trained
centrally on the very same shards with the same vocabulary and hyperparameters for
rounds x local_epochs epochs (fedembed's own baseline, in the same run), and the ratio.

    bash bench/get_corpus.sh
    python bench/federated_quality.py                    # documented setting: 20 rounds x 1 epoch, lr 0.1
    python bench/federated_quality.py --reference-lr 0.025 --tag ref   # + gensim at its default lr
    python bench/federated_quality.py --rounds 5 --lr 0.025 --tag r5   # fedembed's defaults
    python bench/federated_quality.py --aggregate fedavg --tag fedavg

Why lr 0.1: averaging ten clients' deltas moves a row shared by all of them about as far
as one client's epoch on a tenth of the data would, so at fedembed's default lr 0.025 a
federation needs ~10x the passes gensim does (docs/BENCHMARKS.md has the sweep); 0.1 is
the highest learning rate at which the batched kernel stays finite here (0.15 diverges).
The baseline in report.json uses the same lr; --reference-lr trains one more gensim model
on the same shards for the same epochs at another lr (0.025 is gensim's default), so the
federated figures can also be read against gensim at its own best setting.

Everything stays on this machine: the Ray runtime under Flower's simulation is pinned to
127.0.0.1 (see LOOPBACK below) and nothing else opens a socket.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

# Ray otherwise advertises (and connects to) the address of the default-route interface;
# with this it picks 127.0.0.1, so every connection of the simulation is loopback.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
os.environ.update(LOOPBACK)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench" / "data" / "corpus"
VOCAB = ROOT / "bench" / "data" / "vocab.tsv"
LISTS = ("wordsim353", "simlex999")


def reference_baseline(run_dir: Path, lr: float) -> dict:
    """gensim on the run's shards and vocabulary, its epochs as report.json's baseline, another lr."""
    from fedembed import compose
    from fedembed.data.shards import Manifest
    from fedembed.eval.baseline import train_gensim
    from fedembed.eval.wordsim import evaluate
    from fedembed.vocab import Vocabulary

    cfg = compose.load(run_dir / "config.toml", {"train.lr": lr})
    vocab = Vocabulary.load(run_dir / "vocab.tsv")
    manifest = Manifest.load(run_dir / "data" / "manifest.json")
    t0 = time.perf_counter()
    kv = train_gensim(cfg, vocab, run_dir / "data", manifest.active)
    q = evaluate(kv, analogies=False)
    return {"lr": lr, "seconds": time.perf_counter() - t0, **{n: q[n]["spearman"] for n in LISTS}}


def overrides_for(args, partition: str) -> dict:
    from fedembed.cli import parse_value  # KEY=VALUE as `fedembed simulate --set` reads it

    o = {
        "name": f"bench-{args.tag}-{partition}",
        "seed": args.seed,
        "data.corpus": str(CORPUS), "data.format": "dir",
        "vocab.source": str(VOCAB), "vocab.min_count": 5,
        "partition.name": partition, "partition.num_clients": args.clients,
        "model.family": args.family,
        "federation.rounds": args.rounds, "train.local_epochs": args.local_epochs,
        "federation.aggregate": args.aggregate,
        "eval.baseline": True,
    }
    o["train.lr"] = args.lr
    for item in args.set:
        key, _, value = item.partition("=")
        o[key] = parse_value(value)
    return o


def summarise(partition: str, report: dict, wall: float) -> dict:
    q, b = report["quality"], report["baseline"]["gensim"]
    row = {"partition": partition, "wall_seconds": wall, "fed_seconds": report["run"].get("seconds"),
           "baseline_seconds": b.get("seconds"), "tokens": report["run"]["tokens"],
           "vocab": report["run"]["vocab_size"], "final_train_loss": report["run"].get("final_train_loss")}
    for name in LISTS:
        row[name] = {"federated": q[name]["spearman"], "gensim": b[name]["spearman"],
                     "ratio": report["ratio_to_baseline"][f"{name}.spearman"], "oov": q[name]["oov"]}
    row["analogy"] = {"federated": q["analogy"]["accuracy"], "gensim": b["analogy"]["accuracy"]}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--partitions", nargs="+", default=["iid", "natural"], choices=["iid", "natural"])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--aggregate", default="rowwise", choices=["rowwise", "fedavg"])
    ap.add_argument("--family", default="sgns", choices=["sgns", "cbow"])
    ap.add_argument("--lr", type=float, default=0.1, help="train.lr (fedembed's default is 0.025); the baseline uses it too")
    ap.add_argument("--reference-lr", type=float, default=None,
                    help="also train gensim on the same shards for the same epochs at this lr (e.g. 0.025)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config override")
    ap.add_argument("--tag", default="default", help="names the run directories and the JSON file")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "federated_quality"))
    args = ap.parse_args(argv)

    if not (CORPUS.is_dir() and VOCAB.is_file()):
        print(f"no corpus at {CORPUS} (and {VOCAB}): run `bash bench/get_corpus.sh` first", file=sys.stderr)
        return 2
    from fedembed import simulate

    out = Path(args.out)
    rows = []
    for partition in args.partitions:
        run_dir = out / f"{args.tag}-{partition}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        overrides = overrides_for(args, partition)
        print(f"[{partition}] {args.clients} clients, {args.rounds} rounds x {args.local_epochs} local epochs, "
              f"{args.aggregate}, {args.family}; gensim baseline {args.rounds * args.local_epochs} epochs -> {run_dir}",
              flush=True)
        t0 = time.perf_counter()
        report = simulate(None, out=run_dir, overrides=overrides, progress=False)
        row = summarise(partition, report, time.perf_counter() - t0)
        row["overrides"] = overrides
        print(f"[{partition}] " + "; ".join(
            f"{n} federated {row[n]['federated']:.4f} gensim {row[n]['gensim']:.4f} ratio {row[n]['ratio']:.3f}"
            for n in LISTS) + f" | federated {row['fed_seconds']:.0f}s, gensim {row['baseline_seconds']:.0f}s, "
            f"wall {row['wall_seconds']:.0f}s", flush=True)
        if args.reference_lr is not None:
            ref = reference_baseline(run_dir, args.reference_lr)
            for n in LISTS:
                ref[f"{n}_ratio"] = row[n]["federated"] / ref[n] if ref[n] else None
            row["reference"] = ref
            print(f"[{partition}] gensim at lr {ref['lr']}: " + "; ".join(
                f"{n} {ref[n]:.4f} (federated / it {ref[n + '_ratio']:.3f})" for n in LISTS)
                + f" | {ref['seconds']:.0f}s", flush=True)
        rows.append(row)
    path = out / f"{args.tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine_cpus": os.cpu_count(), "runs": rows}, indent=2), encoding="utf-8")
    ref_head = f" {'gensim@' + str(args.reference_lr):>13} {'ratio':>6}" if args.reference_lr is not None else ""
    print(f"\n{'partition':<10} {'list':<11} {'federated':>9} {'gensim':>8} {'ratio':>6}{ref_head}")
    for row in rows:
        for n in LISTS:
            ref = row.get("reference")
            tail = f" {ref[n]:>13.4f} {ref[n + '_ratio']:>6.3f}" if ref else ""
            print(f"{row['partition']:<10} {n:<11} {row[n]['federated']:>9.4f} {row[n]['gensim']:>8.4f} "
                  f"{row[n]['ratio']:>6.3f}{tail}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
