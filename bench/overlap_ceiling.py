"""The ceiling of `quality.neighbour_overlap`: gensim against gensim with another seed, same data.

Why: the overlap of a run is measured against one gensim model (report.json's baseline); two
gensim models that differ only in their seed do not share all their nearest neighbours either,
so "0.9× gensim" for the overlap means 0.9× what a second gensim seed gets.

    python bench/overlap_ceiling.py RUN_DIR [--seed 1]     # a finished run with eval.baseline = true
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", help="the run's scenario (default: RUN/config.toml)")
    args = ap.parse_args()
    from fedembed import compose
    from fedembed.data.shards import Manifest
    from fedembed.eval.baseline import train_gensim
    from fedembed.eval.neighbours import neighbour_overlap
    from fedembed.eval.wordsim import evaluate as wordsim
    from fedembed.vocab import Vocabulary

    run = Path(args.run)
    cfg = compose.load(args.config or run / "config.toml")
    vocab = Vocabulary.load(run / "vocab.tsv")
    clients = Manifest.load(run / "data" / "manifest.json").active
    first = train_gensim(cfg, vocab, run / "data", clients, workers=2)
    second = train_gensim(dataclasses.replace(cfg, seed=args.seed), vocab, run / "data", clients, workers=2)
    import numpy as np
    vectors = np.stack([second[w] for w in vocab.words])
    print(json.dumps({"run": str(run), "gensim_seed": cfg.seed, "other_seed": args.seed,
                      "neighbour_overlap": neighbour_overlap(vocab.words, vectors, first, vocab.counts),
                      "wordsim353": [wordsim(k, analogies=False)["wordsim353"]["spearman"] for k in (first, second)]}))


if __name__ == "__main__":
    main()
