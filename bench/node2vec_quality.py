"""node2vec over a graph split across clients, against node2vec trained centrally (issue 15).

The Debian dependency graph (bench/get_debian.sh): packages are nodes, sections their labels,
maintainers the owners — each maintainer's packages go whole to one of `--clients` clients,
which holds its nodes and the edges touching them and walks only that (fedembed/graph).
10% of the edges are held out for link prediction first; everything trains on the rest.

Same run, same walk and SGNS settings:
  central/gensim  walks over the whole graph, gensim Word2Vec (node2vec's reference trainer)
  central/fedembed the same walks, fedembed's SGNS trainer
  federated       per round every client walks its subgraph afresh and trains one local epoch
                  from the global table; the server takes the row-wise mean of the deltas,
                  each row weighted by how often the client updated it (federation.row_weight
                  = "count", fedembed/aggregate/rowwise.py's rule), rounds = central epochs.
Reports node classification (micro/macro F1) and link prediction (AUC), their federated ÷
central ratios, and walk + training throughput (nodes visited per second). JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from fedembed.graph.csr import Graph
from fedembed.graph.edgelist import read_edges, read_node_table
from fedembed.graph.evaluate import link_prediction, node_classification
from fedembed.graph.holdout import split_edges
from fedembed.graph.node2vec import Node2VecParams, init_tables, local_round, train_gensim, train_walks
from fedembed.graph.split import client_graph, owners_from_table
from fedembed.graph.walks import WalkParams, walk


def note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def lr_at(r: float, total: int, lr: float, min_lr: float) -> float:
    return lr + (min_lr - lr) * r / total


def federate(train: Graph, owners: np.ndarray, k: int, p: Node2VecParams, rounds: int, lr: float, min_lr: float,
             seed: int, local_epochs: int = 1, server_lr: float = 1.0,
             counts: np.ndarray | None = None) -> tuple[dict, dict]:
    tables = init_tables(train.num_nodes, p.dim, seed)
    held = [client_graph(train, owners, c) for c in range(k)]
    owned = [np.flatnonzero(owners == c) for c in range(k)]
    t_train = 0.0
    tokens = 0
    for r in range(rounds):
        sums = {n: np.zeros_like(t, dtype=np.float64) for n, t in tables.items()}
        weights = {n: np.zeros(len(t)) for n, t in tables.items()}
        for c in range(k):
            t0 = time.perf_counter()
            out = local_round(tables, held[c], owned[c], p, local_epochs, lr_at(r, rounds, lr, min_lr),
                              lr_at(r + 1, rounds, lr, min_lr), seed * 1000 + r * k + c, counts)
            t_train += time.perf_counter() - t0
            tokens += out.stats.words
            for n in tables:
                w = out.row_counts[n]
                sums[n] += (out.tables[n] - tables[n]) * w[:, None]
                weights[n] += w
        for n in tables:
            has = weights[n] > 0
            tables[n][has] += (server_lr * sums[n][has] / weights[n][has, None]).astype(np.float32)
    return tables, {"seconds": t_train, "tokens": tokens}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/debian/graph")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--walks", type=int, default=4)
    ap.add_argument("--length", type=int, default=20)
    ap.add_argument("--p", type=float, default=1.0)
    ap.add_argument("--q", type=float, default=1.0)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.025)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--central-epochs", type=int, default=0, help="0 = --rounds")
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--server-lr", type=float, default=1.0)
    ap.add_argument("--central-json", default="", help="reuse the central figures of an earlier run's output")
    ap.add_argument("--negatives", default="public", choices=("public", "local"),
                    help="clients' negative distribution: the public node counts (degrees) or their own walks'")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    edges = read_edges(f"{args.data}/edges.tsv")
    labels = read_node_table(f"{args.data}/labels.tsv", edges.index)
    owner_names = read_node_table(f"{args.data}/owners.tsv", edges.index, "owner")
    graph = Graph.from_edgelist(edges)
    split = split_edges(graph, 0.1, args.seed)
    owners = owners_from_table(graph.num_nodes, owner_names, args.clients)
    p = Node2VecParams(WalkParams(args.walks, args.length, args.p, args.q), dim=args.dim)
    min_lr = 1e-4
    out: dict = {"graph": {"nodes": graph.num_nodes, "edges": int(graph.degree.sum() // 2),
                           "held_out_edges": int(len(split.pos)), "classes": len(set(labels.values())),
                           "clients": args.clients, "owners": len(set(owner_names.values()))},
                 "settings": vars(args)}

    note(f"graph {graph.num_nodes} nodes, {len(split.pos)} held out; walking")
    central_epochs = args.central_epochs or args.rounds
    counts = split.train.degree.astype(np.int64) if args.negatives == "public" else None
    if args.central_json:
        fed_tables, _ = federate(split.train, owners, args.clients, p, args.rounds, args.lr, min_lr, args.seed,
                                 args.local_epochs, args.server_lr, counts)
        prev = json.load(open(args.central_json))
        base = prev["quality"]["central_gensim"]
        vec = fed_tables["in_vectors"]
        fedq = {**node_classification(vec, labels, seed=args.seed), **link_prediction(vec, split.pos, split.neg)}
        fedq["ratio_to_central"] = {k: fedq[k] / base[k] for k in ("macro_f1", "micro_f1", "auc")}
        print(json.dumps({"settings": vars(args), "federated": fedq, "central_gensim": base}, indent=1))
        return
    t0 = time.perf_counter()
    ids, bounds = walk(split.train, p.walk, args.seed)
    t_walk = time.perf_counter() - t0
    note(f"walks: {len(ids)} nodes visited in {t_walk:.1f}s; gensim")
    t0 = time.perf_counter()
    gensim_vec = train_gensim(ids, bounds, graph.num_nodes, p, central_epochs, args.lr, min_lr, args.seed,
                              workers=1)
    t_gensim = time.perf_counter() - t0
    note(f"gensim {t_gensim:.1f}s; fedembed central")
    t0 = time.perf_counter()
    ours = train_walks(init_tables(graph.num_nodes, p.dim, args.seed), ids, bounds, p, central_epochs, args.lr,
                       min_lr, args.seed)
    t_ours = time.perf_counter() - t0
    note(f"fedembed central {t_ours:.1f}s; federated")
    t0 = time.perf_counter()
    fed_tables, fed = federate(split.train, owners, args.clients, p, args.rounds, args.lr, min_lr, args.seed,
                               args.local_epochs, args.server_lr, counts)
    t_fed = time.perf_counter() - t0

    note(f"federated {t_fed:.1f}s; evaluating")
    results = {}
    for name, vec in (("central_gensim", gensim_vec), ("central_fedembed", ours.tables["in_vectors"]),
                      ("federated", fed_tables["in_vectors"])):
        results[name] = {**node_classification(vec, labels, seed=args.seed),
                         **link_prediction(vec, split.pos, split.neg)}
    base = results["central_gensim"]
    results["federated"]["ratio_to_central"] = {
        k: results["federated"][k] / base[k] for k in ("macro_f1", "micro_f1", "auc")}
    out["quality"] = results
    tokens = len(ids) * central_epochs
    out["throughput"] = {
        "central_walk_seconds": round(t_walk, 2),
        "central_gensim": {"seconds": round(t_walk + t_gensim, 2), "nodes_per_s": round(tokens / (t_walk + t_gensim))},
        "central_fedembed": {"seconds": round(t_walk + t_ours, 2), "nodes_per_s": round(tokens / (t_walk + t_ours))},
        "federated": {"seconds": round(t_fed, 2), "nodes_per_s": round(fed["tokens"] / t_fed),
                      "nodes_walked": int(fed["tokens"])},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
