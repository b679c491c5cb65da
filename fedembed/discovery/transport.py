"""How a discovery round's votes become one noisy sum: in the clear to a trusted server, or under SecAgg+.

`PlainVotes`: each voter's vector reaches the server, which checks it (length, sign, L2 ≤ 1),
sums and adds N(0, z²) from secret randomness. `SecureVotes`: a SecAgg+ round of its own
(keys for nodes the run has not met, share, mask, unmask; fedembed.secagg's server and client,
the federation's exchange) whose mask stage votes instead of training; each of the m clients
that shared adds N(0, z²/m) before quantizing (dithered), so the server learns only the sum
with noise N(0, z²·m'/m), m' the masked vectors that arrived. An aborted round (too many
dropouts) releases nothing and spends nothing; the caller asks again.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message, RecordDict

from fedembed.discovery import wire
from fedembed.errors import FedembedError
from fedembed.federation import stream
from fedembed.privacy.sampling import secret_rng

log = logging.getLogger(__name__)


@dataclass
class VoteSum:
    noisy: np.ndarray | None          # None: the round aborted, nothing released
    noise_multiplier: float           # z actually present in the sum (sensitivity 1)
    voters: int                       # clients whose vote is in the sum
    record: dict[str, Any] = field(default_factory=dict)   # bytes, dropouts, …
    aborted: str | None = None


class PlainVotes:
    name = "plain"

    def __init__(self, cfg, rng: np.random.Generator | None = None) -> None:
        self.cfg, self.rng = cfg, rng

    def collect(self, grid, nodes: dict[int, int], rnd: int, voters: list[int], content: RecordDict, size: int,
                z: float) -> VoteSum:
        msgs = [Message(content=content, dst_node_id=nodes[p], message_type=wire.PLAIN, group_id=f"{rnd}.vote")
                for p in voters]
        total = np.zeros(size)
        partition_of = {n: p for p, n in nodes.items()}
        got, failed, down = 0, {}, wire_bytes(content) * len(voters)
        up = 0
        for reply in stream.send_and_receive(grid, msgs, self.cfg.federation.max_in_flight,
                                             self.cfg.federation.round_timeout or None) if msgs else []:
            p = partition_of.get(reply.metadata.src_node_id, -1)
            if reply.has_error():
                failed[p] = str(reply.error.reason)
                continue
            try:
                total += wire.parse_votes(reply.content, size)
            except FedembedError as exc:
                failed[p] = str(exc)
                log.warning("discovery round %d: refused the vote of partition %d: %s", rnd, p, exc)
                continue
            up += wire_bytes(reply.content)
            got += 1
        rng = self.rng or secret_rng()
        total += rng.normal(0.0, z, size)           # a trusted server's noise: the same whoever voted
        return VoteSum(total, z, got, {"bytes_up": up, "bytes_down": down, "failed": len(failed)})


def wire_bytes(content: RecordDict) -> int:
    """Bytes of a message's arrays and of its config records' strings and byte strings."""
    from fedembed.federation.wire import nbytes

    n = nbytes(content)
    for rec in content.config_records.values():
        for v in rec.values():
            for x in v if isinstance(v, list) else [v]:
                n += len(x.encode()) if isinstance(x, str) else len(x) if isinstance(x, bytes) else 8
    return n


class SecureVotes:
    name = "secagg+"

    def __init__(self, cfg) -> None:
        from fedembed.secagg.server import KeyBook

        self.cfg, self.book = cfg, KeyBook()

    def params(self, n: int, z: float):
        """The round's protocol numbers: the vote part's range is ±1, the ring holds n votes and the noise."""
        from fedembed.secagg import params as sp

        bits, ring = vote_bits(sp.bits(self.cfg), n, z)
        k = sp.degree(self.cfg, n)
        return sp.RoundParams(bits, 1.0, 1.0, ring, k, sp.threshold(self.cfg, k), self.cfg.secagg.min_clients)

    def collect(self, grid, nodes: dict[int, int], rnd: int, voters: list[int], content: RecordDict, size: int,
                z: float) -> VoteSum:
        from fedembed.federation.secure_round import Exchange
        from fedembed.secagg import messages as msg
        from fedembed.secagg.quantize import Layout
        from fedembed.secagg.server import SecAggAbort, ServerRound

        cfg, s, book = self.cfg, self.cfg.secagg, self.book
        ex = Exchange(grid, nodes, rnd, cfg.federation.round_timeout or None)
        srv = None
        try:
            keys = {p: msg.record(round=rnd, seed=cfg.seed, drop=s.drop_keys) for p in voters if p not in book.channel}
            for p, c in ex("keys", msg.KEYS, keys).items():
                ex.accept("keys", p, book.learn, c)
            pids = [p for p in voters if p in book.channel]
            if len(pids) < s.min_clients:
                raise SecAggAbort(f"discovery round {rnd}: {len(pids)} voter(s) have keys, fewer than "
                                  f"secagg.min_clients = {s.min_clients}")
            drops = {st: getattr(s, f"drop_{st}") for st in ("keys", "share", "mask", "unmask")}
            srv = ServerRound(pids, book, self.params(len(pids), z), rnd, Layout({}, size), cfg.seed, drops)
            for p, c in ex("share", msg.SHARE, {p: srv.share_content(p) for p in pids}).items():
                ex.accept("share", p, srv.on_share, c)
            m = len(srv.u1)
            share = z / math.sqrt(max(m, 1))
            contents = {p: RecordDict({**dict(content.items()), msg.SECAGG: srv.mask_record(p, 0.0, True, share)})
                        for p in sorted(srv.u1)}
            for p, c in ex("mask", wire.MASKED, contents).items():
                ex.accept("mask", p, lambda p_, c_: srv.add_masked(p_, msg.masked_of(c_)), c)
            del contents
            srv.check_survivors()
            for p, c in ex("unmask", msg.UNMASK, {p: srv.unmask_content(p) for p in sorted(srv.u2)}).items():
                ex.accept("unmask", p, srv.on_unmask, c)
            total, dither_sum = srv.finish(dither=True)
        except SecAggAbort as exc:
            log.warning("discovery round %d: secure aggregation aborted, nothing released: %s", rnd, exc)
            return VoteSum(None, 0.0, 0, _stats(ex, srv), aborted=str(exc))
        _, _, votes = srv.quantizer.decode_all(total, dither_sum)
        arrived = len(srv.u2)
        return VoteSum(votes, z * math.sqrt(arrived / m), arrived, _stats(ex, srv))


def vote_bits(bits: int, n: int, z: float, fewest: int = 8) -> tuple[int, int]:
    """(bits, ring): at most `bits`, fewer if that keeps the sum of n votes and its noise in a 32-bit ring.

    A vote is in [0, 1] and the noise's std is z ≥ ~0.3 vote units, so a step of 2^-(b-1) far
    below it costs nothing; a 64-bit ring would double every client's upload. With 1,000 voters
    20 bits fit 32; with 240,000, 12 bits do (a step of 5·10^-4)."""
    from fedembed.secagg.quantize import levels, ring_bits

    for b in range(bits, fewest - 1, -1):
        if ring_bits(b, max(n, 1), z * levels(b)) == 32:
            return b, 32
    ring = ring_bits(bits, max(n, 1), z * levels(bits))
    if ring is None:
        raise FedembedError(f"secagg.bits = {bits} with {n} voters does not fit a 64-bit ring")
    return bits, ring


def _stats(ex, srv) -> dict[str, Any]:
    out: dict[str, Any] = {"bytes_up": ex.bytes_up, "bytes_down": ex.bytes_down,
                           "failed": sum(len(f) for f in ex.failures.values()),
                           "dropped": {st: len(f) for st, f in ex.failures.items()},
                           "seconds": {k: round(v, 4) for k, v in ex.seconds.items()}}
    if srv is not None:
        out.update(ring_bits=srv.p.ring, bits=srv.p.bits, neighbours=srv.p.degree, threshold=srv.p.threshold,
                   shared=len(srv.u1), masked=len(srv.u2))
    return out
