"""The global model's own training loss: every client's shard read once at learning rate 0.

Why: a run's `train_loss` (metrics.jsonl) is the clients' mean loss *during* their local epoch,
which includes what each client fits of its own shard as it goes. At a large local learning rate
that in-epoch fitting lowers the figure; as the schedule decays it fades, and the figure climbs
back towards the global model's own loss even while the global model improves. Reading the
shards at lr 0 (the same SGNS loss, negatives and subsampling, no update) measures the model
the server holds.

    python bench/global_loss.py runs/default [more run dirs] [--lr 0 --lr 0.005 --lr 0.025]
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def global_loss(run_dir: str, lrs: list[float]) -> dict:
    from fedembed import checkpoint, compose, models
    from fedembed.data.shards import Manifest
    from fedembed.vocab import Vocabulary
    from pathlib import Path

    run = Path(run_dir)
    cfg = compose.load(run / "config.toml")
    family = models.make(cfg)
    tables = checkpoint.load(run).tables
    vocab = Vocabulary.load(run / "vocab.tsv")
    manifest = Manifest.load(run / "data" / "manifest.json")
    by_lr = {}
    for lr in lrs:       # the same global model, each client's epoch at a constant lr (0: no update)
        loss = examples = 0.0
        for c in manifest.active:
            got = family.train(tables, family.load_data(run / "data", int(c)), vocab.counts, lr, lr, 1 + int(c),
                               None, {})
            loss += got.loss * got.examples
            examples += got.examples
        by_lr[lr] = loss / max(examples, 1)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"train_loss"' in x]
    return {"run": str(run), "in_epoch_loss_by_lr": by_lr,
            "train_loss_by_round": {r["round"]: [round(r["train_loss"], 4), r.get("lr")] for r in rows}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--lr", type=float, action="append", help="local lr(s) to read the shards at (default 0)")
    args = ap.parse_args()
    for r in args.runs:
        print(json.dumps(global_loss(r, args.lr or [0.0])))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
