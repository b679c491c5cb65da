"""Fast settings sweeps on the shards of an existing bench/federated_quality.py run.

`fed` replays fedembed's rounds in this process, without Flower or Ray: per round it
calls the same functions the ServerApp and ClientApp do (learning_rates, sample_clients,
Family.train_local, the aggregation rule's client_weights, delta, the update pipeline,
Accumulator, divide_rows), two clients at a time in forked workers. It is ~3x faster than
a simulation on 2 cores and gives the same vectors (checked: 5 rounds IID reproduce the
simulation's WordSim353/SimLex999 to all printed digits). `gensim` trains the centralized
baseline exactly as report.json's (fedembed.eval.baseline.train_gensim) for a given
number of epochs. Both print WordSim353 / SimLex999 Spearman. The federated_quality.py
figures are the benchmark; this is for exploring settings.

    python bench/sweep.py fed    bench/out/federated_quality/default-iid --set federation.rounds=20 --set train.lr=0.1
    python bench/sweep.py gensim bench/out/federated_quality/default-iid --epochs 20 --set train.lr=0.025
"""
from __future__ import annotations

import argparse
import json
import os
import time
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fedembed import aggregate, compose, models  # noqa: E402
from fedembed.aggregate import divide_rows  # noqa: E402
from fedembed.aggregate.accumulate import Accumulator  # noqa: E402
from fedembed.data.shards import Manifest, load_shard  # noqa: E402
from fedembed.eval.wordsim import evaluate  # noqa: E402
from fedembed.export import keyed_vectors  # noqa: E402
from fedembed.federation.server import learning_rates, sample_clients  # noqa: E402
from fedembed.updates import delta, run_pipeline  # noqa: E402
from fedembed.vocab import Vocabulary  # noqa: E402

_STATE: dict = {}  # inherited by the forked workers


def _client(job: tuple[int, int, float, float]):
    """fedembed.federation.client.train_round, minus the wire format."""
    k, rnd, lr_start, lr_end = job
    cfg = _STATE["cfg"]
    torch.set_num_threads(max(1, int(cfg.simulation.num_cpus_per_client)))
    ids, bounds = load_shard(_STATE["shards"], k)
    family = models.make(cfg)
    seed = int(np.random.SeedSequence([cfg.seed, rnd, k]).generate_state(1)[0])
    res = family.train_local(_STATE["tables"], ids, bounds, _STATE["counts"], lr_start, lr_end, seed)
    rule = aggregate.make(cfg)
    update = delta(res.tables, _STATE["tables"], rule.client_weights(res.row_counts, res.examples))
    update = run_pipeline(update, compose.client_stages(cfg, None))
    return update.tables, update.weights, res.loss


def _scores(kv) -> str:
    q = evaluate(kv, analogies=False)
    return f"wordsim353 {q['wordsim353']['spearman']:.4f} simlex999 {q['simlex999']['spearman']:.4f}"


def _overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        for conv in (int, float):
            try:
                value = conv(value)
                break
            except ValueError:
                pass
        out[key] = value
    return out


def fed(run: Path, overrides: dict, eval_every: int, workers: int) -> None:
    cfg = compose.load(run / "config.toml", overrides)
    vocab = Vocabulary.load(run / "vocab.tsv")
    active = Manifest.load(run / "data" / "manifest.json").active
    tables = models.make(cfg).init_tables(len(vocab), cfg.seed)
    _STATE.update(cfg=cfg, shards=run / "data", counts=vocab.counts)
    t0 = time.perf_counter()
    for rnd in range(1, cfg.federation.rounds + 1):
        lr_start, lr_end = learning_rates(cfg, rnd)
        _STATE["tables"] = tables
        acc = Accumulator({k: v.shape for k, v in tables.items()})
        losses = []
        with get_context("fork").Pool(workers) as pool:
            jobs = [(k, rnd, lr_start, lr_end) for k in sample_clients(cfg, active, rnd)]
            for t, w, loss in pool.imap_unordered(_client, jobs):
                acc.add(t, w)
                losses.append(loss)
        for name, d in divide_rows(acc.sums, acc.weights).items():
            tables[name] += d
        line = f"round {rnd} loss {np.mean(losses):.3f} {time.perf_counter() - t0:.0f}s"
        if eval_every and rnd % eval_every == 0 and rnd < cfg.federation.rounds:
            line += " " + _scores(keyed_vectors(vocab.words, tables["in_vectors"]))
        print(line, flush=True)
    print(f"FED {run.name} {json.dumps(overrides)} "
          + _scores(keyed_vectors(vocab.words, models.make(cfg).word_vectors(tables))), flush=True)


def gensim(run: Path, overrides: dict, epochs: int) -> None:
    from fedembed.eval.baseline import train_gensim

    cfg = compose.load(run / "config.toml", {**overrides, "federation.rounds": epochs, "train.local_epochs": 1})
    vocab = Vocabulary.load(run / "vocab.tsv")
    t0 = time.perf_counter()
    kv = train_gensim(cfg, vocab, run / "data", Manifest.load(run / "data" / "manifest.json").active)
    print(f"GENSIM {run.name} epochs {epochs} {json.dumps(overrides)} {_scores(kv)} "
          f"({time.perf_counter() - t0:.0f}s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["fed", "gensim"])
    ap.add_argument("run", type=Path, help="a run directory of bench/federated_quality.py (config.toml, vocab.tsv, data/)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--epochs", type=int, default=5, help="gensim: epochs")
    ap.add_argument("--eval-every", type=int, default=0, help="fed: print scores every N rounds")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="fed: clients trained at once")
    args = ap.parse_args(argv)
    if args.what == "fed":
        fed(args.run, _overrides(args.set), args.eval_every, args.workers)
    else:
        gensim(args.run, _overrides(args.set), args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
