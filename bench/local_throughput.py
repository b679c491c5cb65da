"""Local training throughput: fedembed's Word2VecTrainer against gensim Word2Vec, one core each.

Both train on the same token ids (decoded back to words for gensim), the same vocabulary
(gensim's built with `build_vocab_from_freq` from our counts, as fedembed/eval/baseline.py
does), the same sentence boundaries and the same hyperparameters (dim 100, window 5,
negative 5, sample 1e-3, linear lr 0.025 -> 0.0001 over the same number of epochs).
Ours runs with torch.set_num_threads(1); gensim with workers=1 (one training thread, plus
its job-producer thread). Runs alternate (ours, gensim, ours, ...) so drift hits both.

words/s = in-vocabulary corpus tokens x epochs / wall seconds of the train() call (model
and vocabulary setup excluded for both). The CPU seconds of the process are reported
too, so "per core" can be checked. WordSim353/SimLex999 of the last run of each are
printed as a sanity check that both really trained (fast but broken would not count).

    python bench/local_throughput.py                       # builtin corpus, sgns + cbow
    python bench/local_throughput.py --corpus bench/data/corpus --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

# One thread for every math library, before torch/numpy load them.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402
from gensim.models import Word2Vec  # noqa: E402

from fedembed.data.corpus import read_corpus  # noqa: E402
from fedembed.eval.wordsim import evaluate  # noqa: E402
from fedembed.export import keyed_vectors  # noqa: E402
from fedembed.train.word2vec import Word2VecParams, Word2VecTrainer  # noqa: E402
from fedembed.vocab import from_counts  # noqa: E402

MAX_SENTENCE = 1000  # gensim drops words past 10,000 per job: keep every sentence well below that


def load(corpus: str, min_count: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[list[str]]]:
    docs = [d.tokens for d in read_corpus(corpus)]
    counts: Counter[str] = Counter()
    for toks in docs:
        counts.update(toks)
    vocab = from_counts(counts, min_count=min_count)
    pieces, ends, total = [], [], 0
    for toks in docs:
        ids = vocab.encode(toks)
        for lo in range(0, len(ids), MAX_SENTENCE):
            piece = ids[lo:lo + MAX_SENTENCE]
            pieces.append(piece)
            total += len(piece)
            ends.append(total)
    ids = np.concatenate(pieces).astype(np.int32)
    bounds = np.array(ends, dtype=np.int64)
    words = np.array(vocab.words, dtype=object)
    sentences = [words[p].tolist() for p in pieces]
    return vocab.words, vocab.counts, ids, bounds, sentences


def init_tables(v: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """word2vec's initialisation, as fedembed.models.word2vec does it."""
    rng = np.random.default_rng(seed)
    w_in = ((rng.random((v, dim), dtype=np.float32) - 0.5) / dim).astype(np.float32)
    return torch.from_numpy(w_in), torch.zeros((v, dim), dtype=torch.float32)


def run_ours(sg: bool, args, words, counts, ids, bounds, seed: int):
    params = Word2VecParams(sg=sg, window=args.window, negative=args.negative, sample=args.sample,
                            batch_size=args.batch_size, neg_share=args.neg_share)
    w_in, w_out = init_tables(len(words), args.dim, seed)
    trainer = Word2VecTrainer(w_in, w_out, counts, params)
    c0, t0 = time.process_time(), time.perf_counter()
    stats = trainer.train(ids, bounds, args.epochs, args.lr, args.min_lr, seed)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"words": stats.words, "seconds": wall, "cpu_seconds": cpu}, w_in.numpy()


def run_gensim(sg: bool, args, words, counts, sentences, n_words: int, seed: int):
    model = Word2Vec(vector_size=args.dim, window=args.window, negative=args.negative, sample=args.sample,
                     sg=1 if sg else 0, hs=0, alpha=args.lr, min_alpha=args.min_lr, min_count=1,
                     seed=seed, workers=1)
    model.build_vocab_from_freq(dict(zip(words, counts.tolist())))
    c0, t0 = time.process_time(), time.perf_counter()
    _, raw = model.train(sentences, total_examples=len(sentences), total_words=n_words, epochs=args.epochs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"words": int(raw), "seconds": wall, "cpu_seconds": cpu}, model.wv


def summarise(runs: list[dict]) -> dict:
    wps = [r["words"] / r["seconds"] for r in runs]
    wpc = [r["words"] / r["cpu_seconds"] for r in runs]
    return {"words_per_s": wps, "median_words_per_s": statistics.median(wps),
            "median_words_per_cpu_s": statistics.median(wpc), "runs": runs}


def quality(kv) -> dict:
    q = evaluate(kv, analogies=False)
    return {k: round(v["spearman"], 4) if v["spearman"] is not None else None for k, v in q.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="builtin", help="builtin, a text file or a directory (default builtin)")
    ap.add_argument("--families", nargs="+", default=["sgns", "cbow"], choices=["sgns", "cbow"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--negative", type=int, default=5)
    ap.add_argument("--sample", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=0.025)
    ap.add_argument("--min-lr", type=float, default=0.0001)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--neg-share", type=int, default=32)
    ap.add_argument("--json", default="bench/out/local_throughput.json", help="where the figures go")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    t0 = time.perf_counter()
    words, counts, ids, bounds, sentences = load(args.corpus, args.min_count)
    print(f"corpus {args.corpus}: {len(ids):,} in-vocabulary tokens, {len(bounds):,} sentences, "
          f"vocabulary {len(words):,} (min_count {args.min_count}); loaded in {time.perf_counter() - t0:.1f}s",
          flush=True)
    result = {"corpus": args.corpus, "tokens": int(len(ids)), "sentences": int(len(bounds)), "vocab": len(words),
              "epochs": args.epochs, "repeats": args.repeats,
              "hyper": {k: getattr(args, k) for k in ("dim", "window", "negative", "sample", "lr", "min_lr",
                                                         "batch_size", "neg_share", "min_count")},
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": sys.version.split()[0], "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads()},
              "families": {}}
    for fam in args.families:
        sg = fam == "sgns"
        ours, theirs = [], []
        for r in range(args.repeats):
            o, vec = run_ours(sg, args, words, counts, ids, bounds, seed=r)
            ours.append(o)
            g, kv = run_gensim(sg, args, words, counts, sentences, int(len(ids)), seed=r)
            theirs.append(g)
            print(f"{fam} run {r + 1}/{args.repeats}: ours {o['words'] / o['seconds']:,.0f} words/s "
                  f"({o['seconds']:.1f}s wall, {o['cpu_seconds']:.1f}s cpu) | gensim "
                  f"{g['words'] / g['seconds']:,.0f} words/s ({g['seconds']:.1f}s wall, {g['cpu_seconds']:.1f}s cpu)",
                  flush=True)
        so, sgn = summarise(ours), summarise(theirs)
        entry = {"ours": so, "gensim": sgn,
                 "ratio_words_per_s": so["median_words_per_s"] / sgn["median_words_per_s"],
                 "ratio_words_per_cpu_s": so["median_words_per_cpu_s"] / sgn["median_words_per_cpu_s"],
                 "quality_last_run": {"ours": quality(keyed_vectors(words, vec)), "gensim": quality(kv)}}
        result["families"][fam] = entry
        print(f"{fam}: median ours {so['median_words_per_s']:,.0f} words/s, gensim {sgn['median_words_per_s']:,.0f}"
              f" words/s -> ratio {entry['ratio_words_per_s']:.2f}x (per cpu-second {entry['ratio_words_per_cpu_s']:.2f}x);"
              f" quality ours {entry['quality_last_run']['ours']} gensim {entry['quality_last_run']['gensim']}",
              flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {out} ({time.perf_counter() - t0:.0f}s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
