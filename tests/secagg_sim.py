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


def run(ups: dict[int, ClientUpdate], p: RoundParams, drop: dict[str, set[int]] | None = None,
        states: dict[int, RecordDict] | None = None, book: KeyBook | None = None, rnd: int = 1,
        noise_std: float = 0.0, dither: bool = False, shapes: dict | None = None):
    """Returns (server round, ring total) or raises SecAggAbort; `drop[stage]` fail at that stage."""
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
            u = ups[pid]
            y, _ = proto.on_mask(content, states[pid], pid,
                                 lambda c, u=u: ClientUpdate({k: v.copy() for k, v in u.tables.items()},
                                                             {k: v.copy() for k, v in u.weights.items()}),
                                 np.random.default_rng(1000 + pid))
            srv.add_masked(pid, y)
    srv.check_survivors()
    for pid in sorted(srv.u2):
        if pid not in drop.get("unmask", ()):
            try:
                srv.on_unmask(pid, proto.on_unmask(srv.unmask_content(pid), states[pid], pid))
            except proto.SecAggClientError:      # a client's refusal is a dropout of this stage
                continue
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
    y, _ = proto.on_mask(content, states[0], 0, lambda c: zero)
    return y


# ---- the server loop over an in-process grid that speaks the secure stages (no Ray)

class _Reply:
    def __init__(self, content, src: int, error=None) -> None:
        from types import SimpleNamespace

        self.content, self.error = content, error
        self.metadata = SimpleNamespace(src_node_id=src)

    def has_error(self) -> bool:
        return self.error is not None


class SecureGrid:
    """Answers every message type client/app.py registers, by calling the same handlers."""

    def __init__(self, num: int, fail: dict[tuple[int, str], set[int]] | None = None) -> None:
        """`fail[(round, message type)]`: partitions that answer that message with an error."""
        from types import SimpleNamespace

        from fedembed.federation import wire

        self.num, self.wire = num, wire
        self.nodes = {100 + p: p for p in range(num)}
        self.contexts = {p: SimpleNamespace(node_config={"partition-id": p, "num-partitions": num},
                                            state=RecordDict()) for p in range(num)}
        self.fail = fail or {}
        self.calls: dict[str, int] = {}
        self.seen: list[tuple[str, RecordDict]] = []     # every reply content the server received
        self.batches: list[list[str]] = []               # each exchange: its messages' groups ("round.stage")

    def get_node_ids(self):
        return list(self.nodes)

    def send_and_receive(self, messages, timeout=None):
        from types import SimpleNamespace

        from fedembed.errors import FedembedError
        from fedembed.federation import client as train_client
        from fedembed.secagg.handlers import HANDLERS

        out = []
        self.batches.append([m.metadata.group_id for m in messages])
        for m in messages:
            node = m.metadata.dst_node_id
            pid, mtype = self.nodes[node], m.metadata.message_type
            self.calls[mtype] = self.calls.get(mtype, 0) + 1
            ctx = self.contexts[pid]
            rnd = int(m.metadata.group_id.split(".")[0]) if m.metadata.group_id else 0
            if pid in self.fail.get((rnd, mtype), ()):
                out.append(_Reply(None, node, SimpleNamespace(reason=f"client {pid} crashed")))
                continue
            try:
                if "node" in m.content.config_records:
                    content = self.wire.node_content(pid, self.num)
                elif mtype in HANDLERS:
                    content = HANDLERS[mtype](m.content, ctx)
                else:
                    tables, counts, ins = self.wire.parse_train(m.content)
                    u = train_client.train_round(tables, counts, ins, pid, None, ctx.state)
                    content = self.wire.reply_content(u.tables, u.weights, u.metrics,
                                                      self.wire.parse_record_dp(ctx.state))
            except FedembedError as exc:
                out.append(_Reply(None, node, SimpleNamespace(reason=str(exc))))
                continue
            self.seen.append((mtype, content))
            out.append(_Reply(content, node))
        return out
