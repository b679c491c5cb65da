"""Privacy–utility curve: WordSim353 / SimLex999 Spearman against ε, user level and record level.

Replays fedembed's rounds in this process (no Flower/Ray), calling the functions the
ServerApp and ClientApp call: `learning_rates`, `Family.train_local`, the aggregation rule's
weights, `delta`, the update pipeline (`compose.client_stages`: weight rows, then user-level DP's
`ClipUpdate`), `Accumulator`, and `PrivacySession` (budget check, noisy aggregate, ledger)
for user level; `record_params.resolve` + the client's DP-SGD trainer and its carried
accountant for record level. Differences from a real run, for speed and reproducibility:
client sampling and the server's noise come from a seeded generator (a deployment uses OS
entropy so the draws stay secret; the distribution is the same), and the sampled clients of
a round are trained by two forked workers which return one partial sum each.

    python bench/privacy_utility.py prepare --clients 1000            # IID shards of bench/data (~2 s)
    python bench/privacy_utility.py user --epsilon 8 --set privacy.denominator=public
    python bench/privacy_utility.py record --epsilon 8
    python bench/privacy_utility.py gensim --epochs 20                # the centralized reference
    python bench/privacy_utility.py plot                              # table + PNG from results.jsonl

Every run appends one JSON line to bench/out/privacy_utility/results.jsonl (the settings, ε
spent, δ, scores, seconds); `plot` turns the latest line of each (series, ε) into the table
and bench/out/privacy_utility/privacy_utility.png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fedembed import aggregate, compose, models  # noqa: E402
from fedembed.aggregate import divide_rows  # noqa: E402
from fedembed.aggregate.accumulate import Accumulator  # noqa: E402
from fedembed.data.shards import Manifest, load_shard  # noqa: E402
from fedembed.eval.wordsim import evaluate  # noqa: E402
from fedembed.export import keyed_vectors  # noqa: E402
from fedembed.federation.server import learning_rates  # noqa: E402
from fedembed.privacy.params import sample_rate  # noqa: E402
from fedembed.privacy.sampling import poisson_sample  # noqa: E402
from fedembed.privacy.session import PrivacySession  # noqa: E402
from fedembed.privacy.user_dp import CLIP_BIT  # noqa: E402
from fedembed.updates import delta, run_pipeline  # noqa: E402
from fedembed.vocab import Vocabulary  # noqa: E402

OUT = ROOT / "bench" / "out" / "privacy_utility"
CORPUS, VOCAB = ROOT / "bench" / "data" / "corpus", ROOT / "bench" / "data" / "vocab.tsv"
RESULTS = OUT / "results.jsonl"
LISTS = ("wordsim353", "simlex999")
_STATE: dict = {}   # inherited by the forked workers


def base_overrides(clients: int) -> dict:
    return {"data.corpus": str(CORPUS), "data.format": "dir", "vocab.source": str(VOCAB), "vocab.min_count": 5,
            "partition.name": "iid", "partition.num_clients": clients}


def shard_dir(clients: int) -> Path:
    return OUT / f"iid-{clients}"


def prepare_shards(clients: int) -> Path:
    from fedembed.data.prepare import prepare

    run = shard_dir(clients)
    run.mkdir(parents=True, exist_ok=True)
    prepare(compose.load(None, base_overrides(clients)), run)
    return run


def _train_clients(job: tuple[list[int], int, float, float]):
    """Train the listed clients one after another; return the sums of their updates and bits."""
    clients, rnd, lr_start, lr_end = job
    cfg, tables = _STATE["cfg"], _STATE["tables"]
    torch.set_num_threads(1)
    family, rule, stages = models.make(cfg), aggregate.make(cfg), compose.client_stages(cfg, None)
    acc = Accumulator({k: v.shape for k, v in tables.items()})
    bits = 0.0
    for k in clients:
        ids, bounds = load_shard(_STATE["shards"], k)
        seed = int(np.random.SeedSequence([cfg.seed, rnd, k]).generate_state(1)[0])
        res = family.train_local(tables, ids, bounds, _STATE["counts"], lr_start, lr_end, seed)
        update = run_pipeline(delta(res.tables, tables, rule.client_weights(res.row_counts, res.examples)), stages)
        acc.add(update.tables, update.weights)
        bits += float(update.metrics.get(CLIP_BIT, 0.0))
    return acc.sums, acc.weights, bits, acc.count


def scores(vocab: Vocabulary, cfg, tables) -> dict:
    """WordSim353 / SimLex999 Spearman of the run's word vectors (also saved, for the noise analysis)."""
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(OUT / f"last_vectors-{os.getpid()}.npy", models.make(cfg).word_vectors(tables))
    q = evaluate(keyed_vectors(vocab.words, models.make(cfg).word_vectors(tables)), analogies=False)
    return {n: q[n]["spearman"] for n in LISTS}


def report_round(line: str, rnd: int, eval_every: int, cfg, vocab: Vocabulary, tables, curve: list) -> None:
    """Print a round's progress line, with the word-similarity scores every `eval_every` rounds (kept in `curve`)."""
    if eval_every and rnd % eval_every == 0 and rnd < cfg.federation.rounds:
        s = scores(vocab, cfg, tables)
        curve.append({"round": rnd, **s})
        line += f" ws {s['wordsim353']:.4f} sl {s['simlex999']:.4f}"
    print(line, flush=True)


def run_user(clients: int, epsilon: float, overrides: dict, seed: int, eval_every: int, workers: int) -> dict:
    """One user-level DP-FedAvg run; ε = inf means clipping with noise_multiplier 0."""
    run = prepare_shards(clients)
    over = {**base_overrides(clients), "federation.row_weight": "presence", "privacy.user_level": True,
            "privacy.delta": 1e-6, "seed": seed, **overrides}
    if math.isfinite(epsilon):
        over["privacy.target_epsilon"] = epsilon
    cfg = compose.load(None, over)
    vocab = Vocabulary.load(run / "vocab.tsv")
    active = Manifest.load(run / "data" / "manifest.json").active
    tables = models.make(cfg).init_tables(len(vocab), cfg.seed)
    session = PrivacySession(cfg, {}, rng=np.random.default_rng([seed, 1]), public_counts=vocab.counts)
    sampler = np.random.default_rng([seed, 2])
    _STATE.update(cfg=cfg, shards=run / "data", counts=vocab.counts)
    t0, curve, stopped = time.perf_counter(), [], None
    q = sample_rate(cfg)
    for rnd in range(1, cfg.federation.rounds + 1):
        stopped = session.budget_stop(rnd)
        if stopped:
            break
        lr_start, lr_end = learning_rates(cfg, rnd)
        chosen = poisson_sample(active, q, sampler)
        _STATE["tables"] = tables
        acc = Accumulator({k: v.shape for k, v in tables.items()})
        jobs = [(chosen[i::workers], rnd, lr_start, lr_end) for i in range(workers) if chosen[i::workers]]
        with get_context("fork").Pool(max(1, len(jobs))) as pool:
            for sums, weights, bits, _count in pool.imap_unordered(_train_clients, jobs):
                for k in sums:
                    acc.sums[k] += sums[k]
                    acc.weights[k] += weights[k]
                session.observe({CLIP_BIT: bits})
        for name, d in session.aggregate(acc.sums, acc.weights).items():
            tables[name] += cfg.federation.server_lr * d
        entry = session.end_round(rnd)
        eps = entry["units"]["user"]["epsilon"] if entry else None
        line = f"round {rnd} clients {len(chosen)} eps {eps} clip {session.user.clip:.4g} {time.perf_counter() - t0:.0f}s"
        report_round(line, rnd, eval_every, cfg, vocab, tables, curve)
    summary = session.summary()
    return {"series": "user", "clients": clients, "target_epsilon": epsilon, "epsilon": summary["epsilon"],
            "delta": summary["delta"], "rounds": summary["rounds"], "stopped": stopped,
            "noise_multiplier": session.user.params.noise_multiplier, "sample_rate": q,
            "final_clip": session.user.clip, "curve": curve, **scores(vocab, cfg, tables)}


def run_record(clients: int, epsilon: float, overrides: dict, seed: int, eval_every: int, workers: int) -> dict:
    """Record-level DP-SGD in every client (sentences as samples), rowwise mean of the noised tables."""
    from fedembed.privacy import record_params, record_state
    from fedembed.privacy.record_dp import PrivateTraining, Samples

    run = prepare_shards(clients)
    over = {**base_overrides(clients), "seed": seed, "privacy.record.enabled": math.isfinite(epsilon), **overrides}
    if math.isfinite(epsilon):
        over["privacy.record.target_epsilon"] = epsilon
    cfg = compose.load(None, over)
    vocab = Vocabulary.load(run / "vocab.tsv")
    active = Manifest.load(run / "data" / "manifest.json").active
    family, rule = models.make(cfg), aggregate.make(cfg)
    tables = family.init_tables(len(vocab), cfg.seed)
    states: dict[int, dict] = {}
    t0, curve, eps = time.perf_counter(), [], 0.0
    for rnd in range(1, cfg.federation.rounds + 1):
        lr_start, lr_end = learning_rates(cfg, rnd)
        acc = Accumulator({k: v.shape for k, v in tables.items()})
        for k in active:   # every client every round; one at a time (DP-SGD's steps are the cost)
            ids, bounds = load_shard(run / "data", k)
            seed_k = int(np.random.SeedSequence([cfg.seed, rnd, k]).generate_state(1)[0])
            private = None
            if cfg.privacy.record.enabled:
                samples = Samples(bounds)
                saved = states.get(k)
                params = record_params.resolve(cfg, len(samples), record_state.saved_noise_multiplier(saved),
                                               record_state.history(saved))
                private = PrivateTraining(params, samples, record_state.restore(params.accountant, states.get(k)))
            res = family.train_local(tables, ids, bounds, vocab.counts, lr_start, lr_end, seed_k, private)
            update = delta(res.tables, tables, rule.client_weights(res.row_counts, 1 if private else res.examples))
            update = run_pipeline(update, compose.client_stages(cfg, None))      # weight_rows: the server divides by the weights
            acc.add(update.tables, update.weights)
            if private is not None:
                states[k] = record_state.capture(private.accountant, private.params)
                eps = max(eps, record_state.metrics(private.accountant, private.params)["dp_record_epsilon"])
        for name, d in divide_rows(acc.sums, acc.weights).items():
            tables[name] += d
        line = f"round {rnd} eps {eps:.4g} {time.perf_counter() - t0:.0f}s"
        report_round(line, rnd, eval_every, cfg, vocab, tables, curve)
    sigma = next(iter(states.values()))["noise_multiplier"] if states else 0.0
    return {"series": "record", "clients": clients, "target_epsilon": epsilon,
            "epsilon": eps if cfg.privacy.record.enabled else math.inf, "delta": cfg.privacy.record.delta,
            "rounds": cfg.federation.rounds, "noise_multiplier": sigma, "curve": curve, **scores(vocab, cfg, tables)}


def run_gensim(clients: int, epochs: int, lr: float) -> dict:
    from fedembed.eval.baseline import train_gensim

    run = prepare_shards(clients)
    cfg = compose.load(None, {**base_overrides(clients), "federation.rounds": epochs, "train.lr": lr})
    vocab = Vocabulary.load(run / "vocab.tsv")
    kv = train_gensim(cfg, vocab, run / "data", Manifest.load(run / "data" / "manifest.json").active)
    q = evaluate(kv, analogies=False)
    return {"series": "gensim", "clients": clients, "epochs": epochs, "lr": lr, **{n: q[n]["spearman"] for n in LISTS}}


def _parse(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, text = item.partition("=")
        value: object = {"true": True, "false": False}.get(text.lower(), text)
        for conv in (int, float):
            try:
                value = conv(text)
                break
            except ValueError:
                pass
        out[key] = value
    return out


def _append(row: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, default=lambda x: None if isinstance(x, float) and not math.isfinite(x) else x) + "\n")


def _eps_key(e) -> float:
    return math.inf if e is None or (isinstance(e, float) and not math.isfinite(e)) else float(e)


def plot(results: Path, out_png: Path, tags: list[str] | None) -> str:
    """The table (markdown) and the PNG: the latest row of each (series, tag, target ε)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if not r.get("invalid")]   # runs marked wrong after the fact stay in the file
    ref = next((r for r in reversed(rows) if r["series"] == "gensim"), None)
    latest: dict[tuple, dict] = {}
    for r in rows:
        if r["series"] != "gensim" and (not tags or r.get("tag") in tags):
            latest[(r["series"], r.get("tag", ""), _eps_key(r["target_epsilon"]))] = r
    series: dict[tuple, list[dict]] = {}
    for (s, tag, _e), r in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        series.setdefault((s, tag), []).append(r)
    lines = ["| series | clients | target ε | ε spent (δ) | rounds | z / σ | WordSim353 | SimLex999 | × gensim (WS / SL) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    finite = [e for (_s, _t, e) in latest if math.isfinite(e)]
    inf_x = (max(finite) * 2) if finite else 16
    for (s, tag), rs in series.items():
        xs = [_eps_key(r["target_epsilon"]) for r in rs]
        for r, x in zip(rs, xs):
            ratio = " / ".join(f"{r[n] / ref[n]:.2f}" for n in LISTS) if ref else "-"
            spent = r.get("epsilon")
            lines.append(f"| {s} {tag} | {r['clients']} | {'∞' if math.isinf(x) else f'{x:g}'} | "
                         f"{'∞' if spent is None or math.isinf(spent) else f'{spent:.3g}'} ({r.get('delta') or 0:.0e}) | {r['rounds']} | "
                         f"{r.get('noise_multiplier', 0):.3g} | {r['wordsim353']:.4f} | {r['simlex999']:.4f} | {ratio} |")
        for ax, n in zip(axes, LISTS):
            ax.plot([inf_x if math.isinf(x) else x for x in xs], [r[n] for r in rs], "o-", label=f"{s} {tag}".strip())
    for ax, n in zip(axes, LISTS):
        if ref:
            ax.axhline(ref[n], color="k", ls="--", label=f"gensim centralized ({ref['epochs']} ep)")
            ax.axhline(0.9 * ref[n], color="gray", ls=":", label="0.9 × gensim")
        ax.set_xscale("log", base=2)
        ticks = sorted(set(finite)) + [inf_x]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks[:-1]] + ["∞"])
        ax.set_xlabel("ε (δ = 1e-6)")
        ax.set_ylabel(f"{n} Spearman")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    if ref:
        lines.append(f"| gensim centralized, {ref['epochs']} epochs, lr {ref['lr']} | - | - | - | - | - | "
                     f"{ref['wordsim353']:.4f} | {ref['simlex999']:.4f} | 1 / 1 |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["prepare", "user", "record", "gensim", "plot"])
    ap.add_argument("--clients", type=int, default=None, help="IID clients (user: 1000, record: 10)")
    ap.add_argument("--epsilon", type=float, default=math.inf, help="target ε (inf: no noise)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="scenario override")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="", help="names the series in the table and plot")
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=20, help="gensim: epochs")
    ap.add_argument("--lr", type=float, default=0.025, help="gensim: lr")
    ap.add_argument("--tags", nargs="*", default=None, help="plot: only these tags")
    args = ap.parse_args(argv)
    if not (CORPUS.is_dir() and VOCAB.is_file()):
        print(f"no corpus at {CORPUS}: run `bash bench/get_corpus.sh` first", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if args.what == "prepare":
        print(prepare_shards(args.clients or 1000))
        return 0
    if args.what == "plot":
        print(plot(RESULTS, OUT / "privacy_utility.png", args.tags))
        return 0
    if args.what == "gensim":
        row = run_gensim(args.clients or 1000, args.epochs, args.lr)
    elif args.what == "user":
        row = run_user(args.clients or 1000, args.epsilon, _parse(args.set), args.seed, args.eval_every, args.workers)
    else:
        row = run_record(args.clients or 10, args.epsilon, _parse(args.set), args.seed, args.eval_every, args.workers)
    row.update(tag=args.tag, seed=args.seed, overrides=_parse(args.set), seconds=time.perf_counter() - t0)
    _append(row)
    vectors = OUT / f"last_vectors-{os.getpid()}.npy"
    if vectors.is_file():   # the final vectors of this run, named by series, tag and ε
        vectors.replace(OUT / f"vectors-{row['series']}-{args.tag or 'default'}-eps{args.epsilon:g}.npy")
    print("RESULT " + json.dumps({k: v for k, v in row.items() if k != "curve"}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
