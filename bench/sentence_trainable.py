"""Which part of all-MiniLM-L6-v2 to train: adapter, LoRA or the top layer (issue 15).

Centralized fine-tuning of each kind on the same Debian pairs (bench/sentence_data.py), the
same epochs and batch: the retrieval gain each buys (recall@1, MRR on held-out maintainers)
and its cost per training pair (seconds, the frozen-feature pass of the adapter included).
Prints one JSON line per kind.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentence_data import pooled, split  # noqa: E402

from fedembed.sentence.contrastive import Features, embed, train_pairs  # noqa: E402
from fedembed.sentence.encoder import load_encoder  # noqa: E402
from fedembed.sentence.package import model_dir  # noqa: E402
from fedembed.sentence.retrieval import retrieval  # noqa: E402
from fedembed.sentence.tokenize import WordPiece  # noqa: E402
from fedembed.sentence.trainable import SentenceModel  # noqa: E402

LR = {"adapter": 1e-3, "lora": 5e-4, "top": 5e-5}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default="bench/data/debian/pairs.jsonl")
    ap.add_argument("--train", type=int, default=1500)
    ap.add_argument("--eval", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--kinds", default="adapter,top,lora")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _, parts, ev, _ = split(args.pairs, clients=1000, per_client=10**9, eval_pairs=args.eval, public=0)
    tr = pooled(parts).subset(range(0, len(pooled(parts)), max(1, len(pooled(parts)) // args.train)))
    tr = tr.subset(range(min(args.train, len(tr))))
    d = model_dir()
    tok = WordPiece(d / "tokenizer.json", args.max_length)
    for kind in args.kinds.split(","):
        model = SentenceModel(load_encoder(d), kind, seed=0)
        t0 = time.perf_counter()
        ea, ep = Features(model, tok, ev.anchors), Features(model, tok, ev.positives)
        before = retrieval(embed(model, ea), embed(model, ep))
        t_eval = time.perf_counter() - t0
        t0 = time.perf_counter()
        fa, fp = Features(model, tok, tr.anchors), Features(model, tok, tr.positives)
        t_feat = time.perf_counter() - t0
        stats = train_pairs(model, fa, fp, args.epochs, LR[kind], args.batch, seed=0)
        if model.cacheable:
            ea, ep = Features(model, tok, ev.anchors), Features(model, tok, ev.positives)
        after = retrieval(embed(model, ea), embed(model, ep))
        n_params = sum(p.numel() for p in model.trainable().values())
        print(json.dumps({"kind": kind, "params": n_params, "train_pairs": len(tr), "epochs": args.epochs,
                          "lr": LR[kind], "before": before, "after": after,
                          "gain_recall@1": after["recall@1"] - before["recall@1"],
                          "gain_mrr": after["mrr"] - before["mrr"],
                          "feature_seconds": round(t_feat, 2), "train_seconds": round(stats.seconds, 2),
                          "seconds_per_pair": round((t_feat + stats.seconds) / max(stats.pairs, 1), 5),
                          "eval_seconds": round(t_eval, 2)}), flush=True)


if __name__ == "__main__":
    main()
