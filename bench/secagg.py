"""Secure aggregation's cost: round wall time against plain aggregation, mask expansion against
the cipher's own speed, and bytes per client — each comparison measured in the same run.

1. PRG: `fedembed.secagg.prg.Expander.add` (AES-256-CTR keystream added into a uint32 vector
   of 1M values) against the raw keystream of `cryptography` (`encryptor().update(zeros)`),
   the physical limit on this machine; interleaved repetitions, medians.
2. Protocol compute without Flower: one client's `share` and `mask` work (quantize + k + 1
   mask expansions, no training) and the server's unmasking, for n clients × 1M values.
3. Rounds through Flower's simulation runtime (Ray), the real ClientApp and the server's
   `run_round` with real training: n clients (iid partition of bench/data/corpus), a
   5,000-word vocabulary and dim 100, so each update is 2 × 5,000 × 100 = 1M table values
   (+ 10,000 row weights). Plain and secure rounds alternate inside one simulation (same Ray
   workers, same machine load; the order flips every pair); the first round of each kind is
   not timed (actor warm-up; the one-off channel-key advertisement).

    python bench/secagg.py                          # all three, n = 10 50 100 (~15 min on 2 cores)
    python bench/secagg.py --skip-rounds            # 1 and 2 only (~1 min)
    python bench/secagg.py --both federation.row_weight=presence   # presence weights (default: counts capped at 255; both a 32-bit ring)
    python bench/secagg.py --both federation.max_row_weight=0      # uncapped counts: 40-bit values, a 64-bit ring
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def prg_throughput(values: int = 1 << 20, reps: int = 30) -> dict:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from fedembed.secagg.prg import Expander

    key, nbytes = os.urandom(32), values * 4
    zeros = bytes(nbytes)
    acc = np.zeros(values, dtype=np.uint32)
    ex = Expander()
    raw, into, mask = [], [], []
    out = bytearray(nbytes + 15)
    for _ in range(reps):
        t = time.perf_counter()
        Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(zeros)
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update_into(zeros, out)
        into.append(time.perf_counter() - t)
        t = time.perf_counter()
        ex.add(acc, key)
        mask.append(time.perf_counter() - t)
    mb = nbytes / 1e6
    res = {"values": values, "raw_update_MBps": mb / statistics.median(raw),
           "raw_update_into_MBps": mb / statistics.median(into), "mask_expand_add_MBps": mb / statistics.median(mask)}
    res["ratio_to_raw"] = res["mask_expand_add_MBps"] / max(res["raw_update_MBps"], res["raw_update_into_MBps"])
    return res


def protocol_compute(n: int, values: int = 1_000_000, bits: int = 24) -> dict:
    """Seconds for one client's share and mask stages and the server's unmasking (no training, no Flower)."""
    from flwr.app import RecordDict

    from fedembed.secagg import client as proto, graph, messages as msg
    from fedembed.secagg.params import RoundParams
    from fedembed.secagg.quantize import Layout, ring_bits
    from fedembed.secagg.server import KeyBook, ServerRound
    from fedembed.updates import ClientUpdate

    rows = 5000
    dim = values // (2 * rows)
    shapes = {"in_vectors": (rows, dim), "out_vectors": (rows, dim)}
    k = graph.auto_degree(n)
    k -= k % 2 if k < n - 1 else 0
    t = (k + 1) * 6 // 10 + 1
    p = RoundParams(bits, 2.0 ** 4, 2.0 ** 14, ring_bits(bits, n), k, t, 2)
    states = {i: RecordDict() for i in range(n)}
    book = KeyBook({i: bytes(msg.get(proto.on_keys(msg.record(round=1), states[i], i))["c_pk"]) for i in range(n)})
    srv = ServerRound(list(range(n)), book, p, 1, Layout(shapes))
    rng = np.random.default_rng(0)
    upd = ClientUpdate({k_: rng.normal(0, 0.1, s).astype(np.float32) for k_, s in shapes.items()},
                       {k_: rng.integers(0, 5, s[0]).astype(np.float32) for k_, s in shapes.items()})
    share_t, mask_t = [], []
    for i in range(n):
        t0 = time.perf_counter()
        srv.on_share(i, proto.on_share(srv.share_content(i), states[i], i))
        share_t.append(time.perf_counter() - t0)
    timed = set(range(min(n, 8)))          # mask cost per client is the same for all: time a few
    for i in range(n):
        c = RecordDict({msg.SECAGG: srv.mask_record(i)})
        t0 = time.perf_counter()
        y, _ = proto.on_mask(c, states[i], i, lambda _: upd)
        if i in timed:
            mask_t.append(time.perf_counter() - t0)
        srv.add_masked(i, y)
    for i in range(n):
        srv.on_unmask(i, proto.on_unmask(srv.unmask_content(i), states[i], i))
    t0 = time.perf_counter()
    srv.finish()
    fin = time.perf_counter() - t0
    return {"clients": n, "neighbours": k, "threshold": t, "ring_bits": p.ring,
            "client_share_s": statistics.median(share_t), "client_mask_s": statistics.median(mask_t),
            "server_unmask_s": fin}


def rounds(n: int, corpus: Path, vocab: Path, rounds_: int, out: Path, extra: dict, common: dict) -> dict:
    """Plain and secure rounds interleaved in one simulation (same Ray workers, same load)."""
    import logging
    import warnings

    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from client.app import app as client_app
    from fedembed import compose
    from fedembed.data.prepare import prepare
    from fedembed.federation import server, wire
    from fedembed.privacy.record_state import ServerCopies
    from fedembed.privacy.session import PrivacySession
    from fedembed.simulation import backend_config

    base = {"data.corpus": str(corpus), "vocab.source": str(vocab), "vocab.max_size": 5000,
            "partition.name": "iid", "partition.num_clients": n, "model.dim": 100,
            "federation.rounds": 2 * rounds_, "eval.baseline": False, **common}
    cfgs = {False: compose.load(None, {**base, "secagg.enabled": False}),
            True: compose.load(None, {**base, "secagg.enabled": True, **extra})}
    run_dir = out / f"interleaved_{n}"
    run_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[bool, list[dict]] = {False: [], True: []}
    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        cfg = cfgs[False]
        prep = prepare(cfg, run_dir)
        state = server.initial_state(cfg, run_dir, prep, False)
        sessions = {m: PrivacySession(c, {}) for m, c in cfgs.items()}
        nodes = server.discover_partitions(grid, n)
        clients = sorted(p for p in prep.manifest.active if p in nodes)
        vocab_record = wire.arrays({"counts": prep.vocab.counts})
        shapes = {k: v.shape for k, v in state.tables.items()}
        rnd = 0
        for i in range(rounds_):
            for secure in ((False, True) if i % 2 == 0 else (True, False)):
                rnd += 1
                t0 = time.perf_counter()
                rec = server.run_round(grid, cfgs[secure], prep, state, rnd, clients, nodes, vocab_record, shapes,
                                       sessions[secure], ServerCopies())
                rec["wall"] = time.perf_counter() - t0
                timings[secure].append(rec)
                print(json.dumps({"round": rnd, "secure": secure, "seconds": rec["wall"],
                                  "bytes_up": rec["bytes_up"], "stages": rec.get("secagg", {}).get("seconds")}),
                      flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(server_app=app, client_app=client_app, num_supernodes=n,
                       backend_config=backend_config(cfgs[False]), verbose_logging=False)
    logging.getLogger().setLevel(logging.WARNING)
    res = {"clients": n, "rounds_each": rounds_}
    for secure, name in ((False, "plain"), (True, "secure")):
        rows = timings[secure][1:]          # the first of each: actor warm-up, channel keys
        res[name] = {"round_seconds": [r["wall"] for r in timings[secure]],
                     "median_round_s": statistics.median(r["wall"] for r in rows),
                     "bytes_up_per_client": statistics.median(r["bytes_up"] / r["clients"] for r in rows),
                     "bytes_down_per_client": statistics.median(r["bytes_down"] / r["clients"] for r in rows),
                     "aborted": sum(1 for r in rows if r.get("event") == "secagg_abort")}
    res["ratio"] = res["secure"]["median_round_s"] / res["plain"]["median_round_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--rounds", type=int, default=4, help="timed rounds of each kind, plus one")
    ap.add_argument("--corpus", type=Path, default=ROOT / "bench/data/corpus")
    ap.add_argument("--vocab", type=Path, default=ROOT / "bench/data/vocab.tsv")
    ap.add_argument("--skip-rounds", action="store_true")
    ap.add_argument("--skip-compute", action="store_true", help="skip parts 1 and 2 (PRG, protocol compute)")
    ap.add_argument("--set", nargs="*", default=[], help="secagg.KEY=VALUE for the secure runs")
    ap.add_argument("--both", nargs="*", default=[], help="KEY=VALUE for plain and secure runs alike")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/out/secagg.json")
    args = ap.parse_args()
    res: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "python": platform.python_version()}}
    if not args.skip_compute:
        res["prg"] = prg_throughput()
        print(json.dumps(res["prg"], indent=1), flush=True)
        res["protocol"] = [protocol_compute(n) for n in args.clients]
        print(json.dumps(res["protocol"], indent=1), flush=True)
    if not args.skip_rounds:
        extra, common = {}, {}
        for dest, pairs in ((extra, args.set), (common, args.both)):
            for kv in pairs:
                k, v = kv.split("=", 1)
                try:
                    dest[k] = json.loads(v)
                except json.JSONDecodeError:
                    dest[k] = v
        res["overrides"] = {"secure": extra, "both": common}
        res["rounds"] = []
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            for n in args.clients:
                r = rounds(n, args.corpus, args.vocab, args.rounds, Path(tmp), extra, common)
                res["rounds"].append(r)
                print(json.dumps(r), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
