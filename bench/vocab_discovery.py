"""Private vocabulary discovery (fedembed/discovery): precision and recall against ε, the canary, cost, quality.

Populations (each client's set of distinct words; the simulation holds them, a federation never does):
  builtin  the default corpus (gensim's Lee + Wikipedia sample, 406 documents) split by fedembed's
           IID partitioner over --clients clients (as `partition.name = "iid"` does: most of 1,000
           clients get one document or none);
  cross    the cross-device corpus (`bash bench/get_cross_device.sh`: 240,521 users, one short text
           each); --clients N takes a random N of them, 0 all.

For every ε: `trials` runs of the protocol (fedembed.discovery.simulate: the server's real code,
the clients' votes summed exactly, noise as the clients' shares or a trusted server add it),
precision/recall against the words held by ≥ k clients for k = 5 %, 1 %, 0.1 % of the clients
(where k ≥ 2), and the known-domain bound (one Gaussian histogram over every votable word at the
same ε: what the trie could reach if it cost nothing). Cost: the vote vectors' lengths give the
bytes a client uploads per round (the ring's width, at the bits discovery picks) and downloads
(the round's prefixes or words); one client's compute per round (vote, noise share, dithered
quantization, masks with the auto neighbour count) is timed with the real stages. The canary: a
made-up word given to one client, `canary_trials` runs at --canary-epsilon, next to the bound
e^ε·f/|domain| + δ. Quality (--quality): gensim trained centrally on the population's text with
the discovered vocabulary vs the corpus' own vocabulary (min_count 5): WordSim353, SimLex999 and
neighbour overlap.

    python bench/vocab_discovery.py --population builtin --clients 1000
    python bench/vocab_discovery.py --population cross --clients 1000
    python bench/vocab_discovery.py --population cross --clients 0 --epsilons 1 4 --trials 1 --canary-trials 20
    python bench/vocab_discovery.py --population cross --clients 0 --epsilons 4 --trials 1 --canary-trials 0 --quality
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fedembed import compose  # noqa: E402
from fedembed.discovery import params as dparams, simulate  # noqa: E402
from fedembed.discovery.alphabet import Alphabet  # noqa: E402
from fedembed.discovery.votes import Population  # noqa: E402

CROSS = ROOT / "bench" / "data" / "cross_device" / "corpus.jsonl"
CANARY = "zqvxkjwplm"


def documents(population: str, clients: int) -> tuple[list[list[list[str]]], int]:
    """Each client's documents (token lists), and the number of clients."""
    from fedembed.data.corpus import read_corpus

    if population == "builtin":
        from fedembed.data.partition import make

        part = make("iid", clients, 0)
        out: list[list[list[str]]] = [[] for _ in range(clients)]
        for i, doc in enumerate(read_corpus("builtin")):
            out[part.client_of(i, doc)].append(doc.tokens)
        return out, clients
    if not CROSS.is_file():
        raise SystemExit(f"{CROSS} is missing: run `bash bench/get_cross_device.sh` first")
    users = [[doc.tokens] for doc in read_corpus(str(CROSS), "jsonl")]
    if clients:
        pick = np.random.default_rng(0).choice(len(users), size=clients, replace=False)
        users = [users[i] for i in sorted(pick)]
    return users, len(users)


def params_for(n: int, epsilon: float, **discovery) -> dparams.DiscoveryParams:
    cfg = compose.load(overrides={"privacy.user_level": True, "federation.row_weight": "presence",
                                  "vocab.mode": "discovered", "partition.num_clients": n,
                                  "vocab.discovery.epsilon": epsilon,
                                  **{f"vocab.discovery.{k}": v for k, v in discovery.items()}})
    return dparams.resolve(cfg)


def known_domain_bound(pop: Population, p: dparams.DiscoveryParams, truth: set[str]) -> float:
    """Expected recall of one Gaussian histogram over every votable word (a domain the trie must find)."""
    from fedembed.discovery.domain import WordList

    votable = [w for w, ok in zip(pop.words, pop.votable) if ok]
    signal = pop.vote_sum(WordList(votable))
    z0 = 1 / math.sqrt(sum(z ** -2 for z in p.noise_multipliers))        # all the rounds' budget in one
    tau = z0 * norm.isf(p.false_positives / len(votable))
    index = {w: i for i, w in enumerate(votable)}
    return float(np.mean([norm.sf((tau - signal[index[w]]) / z0) if w in index else 0.0 for w in truth]))


def cost(state, n: int, p: dparams.DiscoveryParams) -> dict:
    """Bytes a client moves and the ring each round uses (the bits discovery picks for n voters)."""
    from fedembed.discovery.transport import vote_bits
    from fedembed.secagg.graph import auto_degree

    rounds = []
    for r in state.rounds:
        bits, ring = vote_bits(20, n, r["noise_multiplier"])
        rounds.append({"kind": r["kind"], "slots": r["slots"], "bits": bits, "ring": ring,
                       "up_bytes": r["slots"] * ring // 8})
    return {"rounds": rounds, "up_bytes": sum(r["up_bytes"] for r in rounds), "neighbours": auto_degree(n)}


def client_seconds(domains: list, words: list[str], n: int) -> float:
    """One client's vote and SecAgg+ stages (noise share, dithered quantization, masks) over the rounds."""
    import os as _os

    from flwr.app import ConfigRecord

    from fedembed.discovery.transport import vote_bits
    from fedembed.discovery.votes import vote_vector
    from fedembed.privacy.distributed import NoiseShare
    from fedembed.secagg import keys
    from fedembed.secagg.client import MaskContext
    from fedembed.secagg.graph import auto_degree
    from fedembed.secagg.stages import Mask, Quantize, RangeClip
    from fedembed.updates import ClientUpdate, run_pipeline

    k = auto_degree(n)
    t = 0.0
    for dom, z in domains:
        bits, ring = vote_bits(20, n, z)
        rec = ConfigRecord({"bits": bits, "table_range": 1.0, "weight_range": 1.0, "ring": ring, "extra": dom.size,
                            "extra_range": 1.0, "peers": list(range(1, k + 1)),
                            "peer_keys": [keys.public_of(keys.new_private()) for _ in range(k)],
                            "noise_std": 0.0, "bit_noise_std": z / math.sqrt(n), "dither": True})
        mctx = MaskContext(0, rec, ConfigRecord({"nonce": _os.urandom(16), "b": _os.urandom(32),
                                                 "s_sk": keys.new_private()}))
        t0 = time.process_time()
        q = mctx.quantizer({})
        run_pipeline(ClientUpdate({}, {}, vector=vote_vector(dom, words)),
                     [RangeClip(q, report=False), NoiseShare(0.0, mctx.bit_noise_std, 0), Quantize(q, mctx.dither_key),
                      Mask(mctx)])
        t += time.process_time() - t0
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--population", choices=["builtin", "cross"], default="builtin")
    ap.add_argument("--clients", type=int, default=1000, help="clients (builtin) or users sampled (cross; 0 = all)")
    ap.add_argument("--epsilons", type=float, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--canary-trials", type=int, default=100)
    ap.add_argument("--canary-epsilon", type=float, default=4.0)
    ap.add_argument("--quality", action="store_true", help="train gensim on the discovered and the true vocabulary")
    ap.add_argument("--quality-epsilon", type=float, default=4.0)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    docs, n = documents(args.population, args.clients)
    sets = [set(t for d in ds for t in d) for ds in docs]
    alphabet = Alphabet()
    pop = Population(sets, alphabet)
    holders = pop.holders()
    with_data = sum(1 for s in sets if s)
    shares = [s for s in (0.05, 0.01, 0.001) if math.ceil(s * n) >= 2]
    print(f"{args.population}: {n:,} clients ({with_data:,} with words), {len(pop.words):,} distinct words; "
          + ", ".join(f"{sum(c >= math.ceil(s * n) for c in holders.values()):,} held by >= {s:.1%}" for s in shares),
          flush=True)
    result: dict = {"population": args.population, "clients": n, "clients_with_words": with_data,
                    "words": len(pop.words), "epsilons": {}, "machine": {"cpus": os.cpu_count()}}
    sample_words = max(sets, key=len)
    for eps in args.epsilons:
        p = params_for(n, eps)
        runs, domains = [], []
        for trial in range(args.trials):
            t0 = time.perf_counter()
            state = simulate.discover(pop, p, np.random.default_rng(trial),
                                      on_round=(lambda d, z: domains.append((d, z))) if trial == 0 else None)
            seconds = time.perf_counter() - t0
            found = [w for w, _ in state.vocabulary()]
            q = {f"{s:g}": simulate.quality(found, holders, math.ceil(s * n), alphabet).__dict__ for s in shares}
            runs.append({"found": len(found), "quality": q, "seconds": seconds, "rounds": len(state.rounds),
                         "cost": cost(state, n, p), "words": found if trial == 0 else None})
        truth = {f"{s:g}": {w for w, c in holders.items() if c >= math.ceil(s * n)} for s in shares}
        bound = {k: known_domain_bound(pop, p, t) for k, t in truth.items()}
        mean = {k: {m: float(np.mean([r["quality"][k][m] for r in runs])) for m in
                    ("recall", "precision", "precision_real")} for k in truth}
        first = runs[0]["cost"]
        t_client = client_seconds(domains, sorted(w for w in sample_words if alphabet.votable(w)), n)
        result["epsilons"][f"{eps:g}"] = {"noise_multipliers": list(p.noise_multipliers), "delta": p.delta,
                                          "runs": runs, "mean": mean, "known_domain_recall": bound,
                                          "client_cpu_seconds_largest_client": t_client}
        print(f"ε = {eps:g} (δ = {p.delta:.2g}): found {np.mean([r['found'] for r in runs]):.0f} words, "
              + "; ".join(f"≥{k}: recall {m['recall']:.3f} (known-domain bound {bound[k]:.3f}), precision "
                          f"{m['precision']:.3f}, real {m['precision_real']:.3f}" for k, m in mean.items())
              + f"; {runs[0]['rounds']} rounds, up {first['up_bytes'] / 2**20:.2f} MiB/client "
                f"({', '.join(str(r['slots']) for r in first['rounds'])} slots, ring bits "
                f"{sorted({r['ring'] for r in first['rounds']})}, k = {first['neighbours']}), "
                f"server+simulation {np.mean([r['seconds'] for r in runs]):.1f} s, one client's vote+mask "
                f"{t_client:.2f} CPU s", flush=True)
    if args.canary_trials:
        result["canary"] = canary(sets, n, args.canary_epsilon, args.canary_trials, alphabet)
    if args.quality:
        result["quality"] = quality(docs, pop, n, args.quality_epsilon, alphabet)
    out = Path(args.json or ROOT / "bench" / "out" / f"vocab_discovery_{args.population}_{n}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {out} ({time.perf_counter() - t_all:.0f} s in all)")
    return 0


def canary(sets: list[set[str]], n: int, eps: float, trials: int, alphabet: Alphabet) -> dict:
    """A word only one client holds, over many runs: how often found, next to what ε allows."""
    holder = next(i for i, s in enumerate(sets) if s)
    planted = [set(s) for s in sets]
    planted[holder].add(CANARY)
    pop = Population(planted, alphabet)
    holders = pop.holders()
    p = params_for(n, eps)
    found = singles = 0
    bound = 0.0
    for t in range(trials):
        state = simulate.discover(pop, p, np.random.default_rng(10_000 + t))
        found += CANARY in state.scores
        singles += sum(holders.get(w) == 1 for w in state.scores)
        bound = max(bound, math.exp(eps) * p.false_positives / max(state.rounds[-1]["slots"], 1) + p.delta)
    upper = 1 - (0.05) ** (1 / trials) if found == 0 else None     # one-sided 95 % Clopper-Pearson
    print(f"canary (ε = {eps:g}): found in {found} of {trials} runs (95 % upper bound {upper:.3f}); words of a "
          f"single client found: {singles}; the bound ε implies per run: {bound:.2e}", flush=True)
    return {"epsilon": eps, "trials": trials, "found": found, "single_client_words_found": singles,
            "rate_upper_95": upper, "bound_per_run": bound}


def quality(docs, pop: Population, n: int, eps: float, alphabet: Alphabet) -> dict:
    """gensim on the same text: the discovered vocabulary (Zipf counts by rank) vs the corpus' own."""
    from gensim.models import Word2Vec

    from fedembed.discovery.rounds import vocabulary
    from fedembed.eval.neighbours import neighbour_overlap
    from fedembed.eval.wordsim import evaluate
    from fedembed.vocab import from_counts

    state = simulate.discover(pop, params_for(n, eps), np.random.default_rng(0))
    found = vocabulary(state)
    counts: Counter[str] = Counter(t for ds in docs for d in ds for t in d)
    true = from_counts(counts, min_count=5)
    sentences = [d for ds in docs for d in ds if d]
    out = {"epsilon": eps, "discovered_words": len(found), "true_words": len(true)}
    kvs = {}
    for name, vocab in (("discovered", found), ("true", true)):
        t0 = time.perf_counter()
        model = Word2Vec(vector_size=100, window=5, negative=5, sample=1e-3, sg=1, min_count=1, seed=0, workers=2)
        model.build_vocab_from_freq(dict(zip(vocab.words, vocab.counts.tolist())))
        model.train(sentences, total_examples=len(sentences), epochs=5)
        kvs[name] = model.wv
        out[name] = {**evaluate(model.wv, analogies=False), "seconds": time.perf_counter() - t0}
    # the true-vocabulary model judged on the discovered words only: the same pairs as the discovered model
    sub = kvs["true"].vectors_for_all([w for w in found.words if w in kvs["true"].key_to_index])
    out["true_on_discovered_words"] = evaluate(sub, analogies=False)
    d = kvs["discovered"]
    out["neighbour_overlap"] = neighbour_overlap(list(d.index_to_key), d.vectors, kvs["true"],
                                                 np.array([found.counts[found.index[w]] for w in d.index_to_key]),
                                                 top=min(1000, len(d.index_to_key) - 11), k=10)
    for name in ("discovered", "true", "true_on_discovered_words"):
        ws, sl = out[name]["wordsim353"], out[name]["simlex999"]
        print(f"quality {name}: WordSim353 {ws['spearman']} (oov {ws['oov']:.2f}), SimLex999 {sl['spearman']} "
              f"(oov {sl['oov']:.2f})", flush=True)
    print(f"neighbour overlap (discovered vs true vocabulary, top words, k = 10): {out['neighbour_overlap']:.3f}")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
