"""A whole SecAgg+ round among in-memory clients, stage by stage, with chosen dropouts (no Flower)."""
from __future__ import annotations

import numpy as np
from flwr.app import RecordDict

from fedembed.secagg import client as proto, messages as msg
from fedembed.secagg.params import RoundParams
from fedembed.secagg.quantize import Layout
from fedembed.secagg.server import KeyBook, ServerRound
from fedembed.updates import ClientUpdate

SHAPES = {"t": (6, 3)}


def params(n: int, k: int | None = None, threshold: int | None = None, ring: int = 32, bits: int = 16,
           min_clients: int = 1) -> RoundParams:
    k = n - 1 if k is None else k
    t = threshold or (k + 1) // 2 + 1
    return RoundParams(bits, 4.0, 8.0, ring, k, t, min_clients)


def updates(n: int, seed: int = 0) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(seed)
    return {p: ClientUpdate({"t": rng.normal(0, 1.5, SHAPES["t"]).astype(np.float32)},
                            {"t": rng.integers(0, 6, SHAPES["t"][0]).astype(np.float32)}) for p in range(n)}


def expected_sum(ups: dict[int, ClientUpdate], survivors, p: RoundParams) -> np.ndarray:
    """Σ of the survivors' quantized (unmasked) vectors, with the rounding each client drew."""
    from fedembed.secagg.quantize import Quantizer

    q = Quantizer(Layout(SHAPES), p.bits, p.table_range, p.weight_range, p.ring)
    total = np.zeros(q.layout.size, dtype=q.dtype)
    for pid in survivors:
        x = q.layout.flatten(ups[pid].tables, ups[pid].weights)
        q.clip(x)
        total += q.encode(x, None, np.random.default_rng(1000 + pid))
    return total


def secure(u: ClientUpdate, shapes: dict):
    """A mask stage's `train`: a copy of the update `u` through the SecAgg+ stages the composition
    root builds for the mask context (flatten, range clip, noise share, quantize, mask)."""
    from fedembed.compose import secure_stages
    from fedembed.updates import run_pipeline

    def train(content, mctx):
        copy = ClientUpdate({k: v.copy() for k, v in u.tables.items()}, {k: v.copy() for k, v in u.weights.items()},
                            dict(u.metrics))
        return run_pipeline(copy, secure_stages(shapes, mctx))
    return train


def run(ups: dict[int, ClientUpdate], p: RoundParams, drop: dict[str, set[int]] | None = None,
        states: dict[int, RecordDict] | None = None, book: KeyBook | None = None, rnd: int = 1,
        noise_std: float = 0.0, dither: bool = False, shapes: dict | None = None, before_finish=None):
    """Returns (server round, ring total) or raises SecAggAbort; `drop[stage]` fail at that stage;
    `before_finish(server round)` may tamper with what the server received before it unmasks."""
    drop = {s: set(v) for s, v in (drop or {}).items()}
    states = states if states is not None else {pid: RecordDict() for pid in ups}
    book = book or KeyBook()
    for pid in ups:
        if pid not in book.channel and pid not in drop.get("keys", ()):
            book.channel[pid] = bytes(msg.get(proto.on_keys(msg.record(round=rnd), states[pid], pid))["c_pk"])
    srv = ServerRound([pid for pid in ups if pid in book.channel], book, p, rnd, Layout(shapes or SHAPES))
    for pid in srv.pids:
        if pid not in drop.get("share", ()):
            srv.on_share(pid, proto.on_share(srv.share_content(pid), states[pid], pid))
    for pid in sorted(srv.u1):
        if pid not in drop.get("mask", ()):
            content = RecordDict({msg.SECAGG: srv.mask_record(pid, noise_std, dither)})
            try:
                y = proto.on_mask(content, states[pid], pid, secure(ups[pid], shapes or SHAPES),
                                  np.random.default_rng(1000 + pid)).vector
            except proto.SecAggClientError:      # a client's refusal (too few peers) is a dropout of this stage
                continue
            srv.add_masked(pid, y)
    srv.check_survivors()
    for pid in sorted(srv.u2):
        if pid not in drop.get("unmask", ()):
            try:
                srv.on_unmask(pid, proto.on_unmask(srv.unmask_content(pid), states[pid], pid))
            except proto.SecAggClientError:      # a client's refusal is a dropout of this stage
                continue
    if before_finish is not None:
        before_finish(srv)
    total, dither_sum = srv.finish(dither)
    return (srv, total, dither_sum) if dither else (srv, total)


def masked_constant(size: int) -> np.ndarray:
    """The masked vector client 0 of a 3-client round sends for an all-zero update of `size` values."""
    shapes = {"t": (size // 2, 2)}
    states = {p: RecordDict() for p in range(3)}
    book = KeyBook({p: bytes(msg.get(proto.on_keys(msg.record(round=1), states[p], p))["c_pk"]) for p in range(3)})
    srv = ServerRound([0, 1, 2], book, params(3), 1, Layout(shapes))
    for p in range(3):
        srv.on_share(p, proto.on_share(srv.share_content(p), states[p], p))
    content = RecordDict({msg.SECAGG: srv.mask_record(0)})
    zero = ClientUpdate({"t": np.zeros(shapes["t"], np.float32)}, {"t": np.zeros(shapes["t"][0], np.float32)})
    return proto.on_mask(content, states[0], 0, secure(zero, shapes)).vector
