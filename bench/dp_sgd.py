"""Record-level DP-SGD against non-private local training: wall time, CPU time and peak memory.

Same data for both: the built-in corpus (`read_corpus('builtin')`), vocabulary from its
counts (`fedembed.vocab.from_counts`, min_count 5), one client holding all of it. The unit
of privacy is the corpus' natural sample: each built-in document (a Lee news line or a
Wikipedia article) is one sample; `--sample-tokens N` cuts documents into N-token pieces
instead, to time sentence-sized samples. Both trainers run the same hyperparameters (dim
100, window 5, negative 5, sample 1e-3, neg_share 32, lr 0.025 → 0.0001) over the same
number of epochs; DP-SGD takes round(epochs / q) Poisson steps of expected batch B.

Every run is its own process (one torch thread), so that its peak RSS is its own: peak
memory = the process' high-water RSS during training minus its RSS just before (tables,
data and trainer already allocated). Runs alternate (plain, DP B1, DP B2, ..., plain, ...)
so that load from other processes hits all of them; medians are reported.

    python bench/dp_sgd.py                                  # SGNS, documents, B in 16 64 256
    python bench/dp_sgd.py --sample-tokens 25 --batches 256 1024 --families sgns cbow
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

from fedembed.train.word2vec import Word2VecParams, Word2VecTrainer  # noqa: E402

DIM, DELTA = 100, 1e-5


def load(sample_tokens: int, min_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, sample ends and vocabulary counts of the built-in corpus."""
    from fedembed.data.corpus import read_corpus
    from fedembed.vocab import from_counts

    docs = [d.tokens for d in read_corpus("builtin")]
    counts: Counter[str] = Counter()
    for toks in docs:
        counts.update(toks)
    vocab = from_counts(counts, min_count=min_count)
    pieces = [vocab.encode(t) for t in docs]
    if sample_tokens:
        pieces = [p[i:i + sample_tokens] for p in pieces for i in range(0, len(p), sample_tokens)]
    pieces = [p for p in pieces if len(p)]
    return np.concatenate(pieces).astype(np.int32), np.cumsum([len(p) for p in pieces]), vocab.counts


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def worker(spec: dict) -> dict:
    """One training run in this process; prints its figures as JSON."""
    torch.set_num_threads(1)
    data = np.load(spec["data"])
    ids, bounds, counts = data["ids"], data["bounds"], data["counts"]
    rng = np.random.default_rng(0)
    w_in = torch.from_numpy(((rng.random((len(counts), DIM), dtype=np.float32) - 0.5) / DIM))
    w_out = torch.zeros(len(counts), DIM)
    params = Word2VecParams(sg=spec["family"] == "sgns", neg_share=spec["neg_share"] if spec["batch"] else 32)
    epochs, lr, min_lr = spec["epochs"], 0.025, 0.0001
    out: dict = {}
    if spec["batch"] == 0:
        trainer = Word2VecTrainer(w_in, w_out, counts, params)
        run = lambda: trainer.train(ids, bounds, epochs, lr, min_lr, seed=0)  # noqa: E731
    else:
        from opacus.accountants import create_accountant

        from fedembed.privacy.record_dp import Samples
        from fedembed.train.word2vec_dp import DPWord2VecTrainer
        from fedembed.privacy.record_params import DPSGDParams

        samples = Samples(bounds)
        q = min(1.0, spec["batch"] / len(samples))
        dp = DPSGDParams(sample_rate=q, clip=spec["clip"], noise_multiplier=spec["sigma"],
                         expected_batch=q * len(samples), steps=max(1, round(epochs / q)), delta=DELTA,
                         accountant="rdp")
        trainer = DPWord2VecTrainer(w_in, w_out, counts, params, dp, eager_noise=spec["eager_noise"])
        accountant = create_accountant("rdp")
        secret = np.random.default_rng(1)       # the same batches every repeat
        run = lambda: trainer.train_dp(ids, samples, lr, min_lr, 0, accountant, secret)  # noqa: E731
        out.update(q=q, steps=dp.steps)
    before = _rss_kb()
    c0, t0 = time.process_time(), time.perf_counter()
    stats = run()
    out.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0,
               peak_mb=max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
               pairs=stats.examples, words=stats.words, loss=stats.loss)
    if spec["batch"]:
        out.update(epsilon=accountant.get_epsilon(delta=DELTA), normals_drawn=trainer.noise.drawn,
                   normals_eager=2 * w_in.numel() * out["steps"])
    return out


def run_one(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_family(fam: str, data: str, args) -> dict:
    """Alternating runs of plain training and DP-SGD at each expected batch; medians and ratios."""
    runs: dict[int, list[dict]] = {b: [] for b in [0, *args.batches]}
    for r in range(args.repeats):
        for b, done in runs.items():
            done.append(run_one({"data": data, "family": fam, "batch": b, "epochs": args.epochs,
                                 "sigma": args.sigma, "clip": args.clip, "neg_share": args.dp_neg_share,
                                 "eager_noise": args.eager_noise}))
            x = done[-1]
            print(f"{fam} {'plain' if b == 0 else f'DP B={b}'} run {r + 1}: {x['seconds']:.2f}s wall, "
                  f"{x['cpu_seconds']:.2f}s cpu, peak +{x['peak_mb']:.0f} MB, {x['pairs']:,} pairs", flush=True)

    def median(b: int) -> dict:
        return {k: statistics.median(x[k] for x in runs[b]) for k in ("seconds", "cpu_seconds", "peak_mb", "pairs")}

    base = median(0)
    entry = {"plain": {**base, "runs": runs[0]}, "dp": {}}
    for b in args.batches:
        med = median(b)
        med.update(q=runs[b][0]["q"], steps=runs[b][0]["steps"], epsilon=runs[b][0]["epsilon"],
                   normals_drawn=runs[b][0]["normals_drawn"], normals_eager=runs[b][0]["normals_eager"],
                   wall_ratio=med["seconds"] / base["seconds"], cpu_ratio=med["cpu_seconds"] / base["cpu_seconds"],
                   cpu_per_pair_ratio=(med["cpu_seconds"] / med["pairs"]) / (base["cpu_seconds"] / base["pairs"]))
        entry["dp"][str(b)] = {**med, "runs": runs[b]}
        print(f"{fam} DP B={b}: q={med['q']:.3f}, {med['steps']} steps, ε={med['epsilon']:.1f} (δ={DELTA:g}); "
              f"wall {med['wall_ratio']:.2f}x, cpu {med['cpu_ratio']:.2f}x, cpu/pair {med['cpu_per_pair_ratio']:.2f}x "
              f"of plain; peak +{med['peak_mb']:.0f} MB vs +{base['peak_mb']:.0f} MB; noise drawn "
              f"{med['normals_drawn'] / med['normals_eager']:.0%} of eager's", flush=True)
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--families", nargs="+", default=["sgns"], choices=["sgns", "cbow"])
    ap.add_argument("--batches", nargs="+", type=int, default=[16, 64, 256], help="expected batch sizes B")
    ap.add_argument("--sample-tokens", type=int, default=0, help="cut documents into samples of this many tokens")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--dp-neg-share", type=int, default=32, help="negative-sharing group size G of the DP runs "
                    "(a sample's pairs are padded to a multiple of G; plain runs keep 32)")
    ap.add_argument("--eager-noise", action="store_true", help="draw each step's noise on all 2·V·D coordinates "
                    "at once instead of lazily (the same distribution; for comparison)")
    ap.add_argument("--json", default="bench/out/dp_sgd.json")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    t0 = time.perf_counter()
    ids, bounds, counts = load(args.sample_tokens, args.min_count)
    print(f"builtin corpus: {len(ids):,} tokens, {len(bounds):,} samples "
          f"({'documents' if not args.sample_tokens else f'{args.sample_tokens}-token pieces'}), "
          f"vocabulary {len(counts):,}", flush=True)
    result = {"tokens": int(len(ids)), "samples": int(len(bounds)), "vocab": int(len(counts)),
              "sample_tokens": args.sample_tokens, "epochs": args.epochs, "repeats": args.repeats,
              "sigma": args.sigma, "clip": args.clip, "dim": DIM, "dp_neg_share": args.dp_neg_share,
              "eager_noise": args.eager_noise,
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": sys.version.split()[0], "torch": torch.__version__, "torch_threads": 1},
              "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "data.npz")
        np.savez(data, ids=ids, bounds=bounds, counts=counts)
        for fam in args.families:
            result["families"][fam] = bench_family(fam, data, args)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {args.json} ({time.perf_counter() - t0:.0f}s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
