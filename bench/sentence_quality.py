"""Federated fine-tuning of all-MiniLM-L6-v2 against centralized fine-tuning (issue 15).

Debian description pairs (bench/get_debian.sh, split by bench/sentence_data.py): the `--clients`
largest maintainers are the clients, held-out maintainers give the evaluation pairs and the
public negatives DP-SGD ranks against. The trainable part is the residual adapter (the choice
measured in bench/sentence_trainable.py); the frozen encoder's sentence vectors are computed
once for every text, as a client does. Same run, same data, same epochs:

  untuned         the packaged model
  central         Adam over the pooled pairs, in-batch contrastive loss, `--epochs` epochs
  federated       `--epochs` rounds, each client one local epoch from the global adapter, the
                  server takes the plain mean of the clients' deltas (weight 1 on every row:
                  fedembed's row-wise rule on a non-row table)
  central DP      record-level DP-SGD (one pair = one record), ε = `--epsilon`, public negatives
  federated DP    every client runs record-level DP-SGD to ε = `--epsilon` over all rounds

Prints recall@1/@10/MRR for each, the gains over the untuned model and their ratios, and
training throughput (pairs/s) with and without DP. JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentence_data import split  # noqa: E402

from fedembed.sentence.contrastive import Features, embed, train_pairs  # noqa: E402
from fedembed.sentence.dp import PairDP, train_pairs_dp  # noqa: E402
from fedembed.sentence.encoder import load_encoder  # noqa: E402
from fedembed.sentence.package import model_dir  # noqa: E402
from fedembed.sentence.retrieval import retrieval  # noqa: E402
from fedembed.sentence.tokenize import WordPiece  # noqa: E402
from fedembed.sentence.trainable import SentenceModel  # noqa: E402


class Cached(Features):
    """Features already computed (a slice of one big frozen pass)."""

    def __init__(self, vectors: torch.Tensor) -> None:
        self.cached, self.texts = vectors, [""] * len(vectors)


def sigma_for(epsilon: float, delta: float, q: float, steps: int) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    return get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=q, steps=steps,
                                accountant="rdp")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default="bench/data/debian/pairs.jsonl")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--per-client", type=int, default=60)
    ap.add_argument("--eval", type=int, default=300)
    ap.add_argument("--public", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dp-lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dp-batch", type=float, default=16, help="DP-SGD's expected batch per client")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--epsilon", type=float, default=8.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dp-optimizer", default="adam", choices=("adam", "sgd"))
    ap.add_argument("--cache", default="bench/out/sentence_features.pt",
                    help="the frozen encoder's vectors by text (the frozen part is public and fixed), reused across runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _, parts, ev, public = split(args.pairs, args.clients, args.per_client, args.eval, args.public)
    d = model_dir()
    tok = WordPiece(d / "tokenizer.json", args.max_length)
    model = SentenceModel(load_encoder(d), "adapter")
    start = {k: v.copy() for k, v in model.tables().items()}
    t0 = time.perf_counter()
    cache: dict[str, torch.Tensor] = torch.load(args.cache) if Path(args.cache).is_file() else {}
    wanted = [t for t in dict.fromkeys([*ev.anchors, *ev.positives, *public,
                                        *(t for p in parts.values() for t in (*p.anchors, *p.positives))])
              if (args.max_length, t) not in cache]
    if wanted:
        new = Features(model, tok, wanted).cached
        cache.update({(args.max_length, t): v for t, v in zip(wanted, new)})
        Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
        torch.save(cache, args.cache)

    def feat(texts: list[str]) -> Cached:
        return Cached(torch.stack([cache[(args.max_length, t)] for t in texts]))
    ev_a, ev_p, neg = feat(ev.anchors), feat(ev.positives), feat(public)
    feats = {c: (feat(p.anchors), feat(p.positives)) for c, p in parts.items()}
    t_features = time.perf_counter() - t0
    n_texts = 2 * (len(ev) + sum(len(p) for p in parts.values())) + len(public)
    all_a = Cached(torch.cat([fa.cached for fa, _ in feats.values()]))
    all_p = Cached(torch.cat([fp.cached for _, fp in feats.values()]))
    n = len(all_a)

    def score() -> dict:
        return retrieval(embed(model, ev_a), embed(model, ev_p))

    out: dict = {"data": {"clients": len(parts), "train_pairs": n, "eval_pairs": len(ev), "public_negatives": len(public),
                          "frozen_texts": n_texts, "frozen_computed": len(wanted),
                          "frozen_seconds": round(t_features, 1)}, "settings": vars(args)}
    res: dict = {"untuned": score()}

    model.load_tables(start)
    st = train_pairs(model, all_a, all_p, args.epochs, args.lr, args.batch, seed=0)
    res["central"] = score()
    out["throughput"] = {"non_private_pairs_per_s": round(st.pairs / st.seconds, 1)}

    model.load_tables(start)
    g = {k: v.copy() for k, v in start.items()}
    for r in range(args.epochs):
        deltas = []
        for i, (fa, fp) in enumerate(feats.values()):
            model.load_tables(g)
            train_pairs(model, fa, fp, 1, args.lr, args.batch, seed=r * 1000 + i)
            deltas.append({k: model.tables()[k] - g[k] for k in g})
        g = {k: g[k] + np.mean([dl[k] for dl in deltas], axis=0) for k in g}
    model.load_tables(g)
    res["federated"] = score()

    from opacus.accountants import RDPAccountant

    q = min(1.0, args.dp_batch * len(parts) / n)
    steps = int(round(args.epochs / q))
    sigma = sigma_for(args.epsilon, args.delta, q, steps)
    model.load_tables(start)
    acc = RDPAccountant()
    st_dp = train_pairs_dp(model, all_a, all_p, neg, steps, args.dp_lr, PairDP(args.clip, sigma, q * n), acc,
                           args.dp_optimizer)
    res["central_dp"] = {**score(), "epsilon": acc.get_epsilon(args.delta), "sigma": sigma, "steps": steps}
    out["throughput"]["dp_pairs_per_s"] = round(st_dp.pairs / st_dp.seconds, 1)

    g = {k: v.copy() for k, v in start.items()}
    accs = {c: RDPAccountant() for c in feats}
    sig = {}
    for c, (fa, _) in feats.items():
        qc = min(1.0, args.dp_batch / len(fa))
        sig[c] = (qc, max(1, int(round(1 / qc))), sigma_for(args.epsilon, args.delta, qc, args.epochs * max(1, int(round(1 / qc)))))
    for r in range(args.epochs):
        deltas = []
        for c, (fa, fp) in feats.items():
            qc, steps_c, sc = sig[c]
            model.load_tables(g)
            train_pairs_dp(model, fa, fp, neg, steps_c, args.dp_lr, PairDP(args.clip, sc, qc * len(fa)), accs[c],
                           args.dp_optimizer)
            deltas.append({k: model.tables()[k] - g[k] for k in g})
        g = {k: g[k] + np.mean([dl[k] for dl in deltas], axis=0) for k in g}
    model.load_tables(g)
    res["federated_dp"] = {**score(), "epsilon_max": max(a.get_epsilon(args.delta) for a in accs.values())}

    base = res["untuned"]["recall@1"]
    gain = res["central"]["recall@1"] - base
    for k in ("central", "federated", "central_dp", "federated_dp"):
        res[k]["gain_recall@1"] = res[k]["recall@1"] - base
        res[k]["gain_ratio_to_central"] = (res[k]["recall@1"] - base) / gain if gain > 0 else None
    out["quality"] = res
    out["throughput"]["dp_time_per_pair_ratio"] = round(out["throughput"]["non_private_pairs_per_s"]
                                                        / out["throughput"]["dp_pairs_per_s"], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
