"""The server's side of SecAgg+ for one round: who gets what, the running sum, the unmasking.

The server only ever holds masked vectors and their running sum (mod 2^w); the masks of the
sum are removed with secrets it reconstructs from ≥ t Shamir shares: the self-mask seed b_u
of every client whose masked vector arrived, the mask key s_u of every client that shared
its keys but whose vector did not (to cancel the pair masks its neighbours added). It never
asks for both secrets of one client, and clients refuse to give both (fedembed.secagg.client).
Any reconstruction short of t shares — too many dropouts — or fewer than `min_clients`
survivors aborts the round with `SecAggAbort`; nothing of it is applied. So does a seed that
does not open the commitment its client sent at the share stage (fedembed.secagg.commit): a
corrupted share names its client instead of silently changing the sum.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from fedembed.errors import FedembedError
from fedembed.secagg import client as proto, graph, keys, messages as msg, shamir
from fedembed.secagg.commit import opens
from fedembed.secagg.params import RoundParams
from fedembed.secagg.prg import Expander
from fedembed.secagg.quantize import Layout, Quantizer
from fedembed.secagg.tally import Tally


EXTRA_RANGE = 1.0      # the adaptive-clipping bit (±½) travels as one extra value in ±1 (the tally's are exact)


class SecAggAbort(FedembedError):
    """The round cannot be unmasked (too many dropouts); the global state stays as it was."""


@dataclass
class KeyBook:
    """Each node's long-lived channel public key, by partition id (kept for the run)."""
    channel: dict[int, bytes] = field(default_factory=dict)

    def learn(self, pid: int, content: RecordDict) -> None:
        """Keep the channel key a node advertised (32 bytes of X25519 public key)."""
        key = bytes(msg.get(content)["c_pk"])
        if len(key) != 32:
            raise proto.SecAggClientError(f"client {pid} advertised a {len(key)}-byte channel key, expected 32")
        self.channel[pid] = key


class ServerRound:
    def __init__(self, pids: list[int], book: KeyBook, params: RoundParams, rnd: int, layout: Layout,
                 seed: int = 0, drops: dict[str, float] | None = None, tally: Tally | None = None) -> None:
        """`layout`'s extra values end with `tally`'s (the round's metric sums, fedembed/secagg/tally.py)."""
        self.tally = tally or Tally((), params.bits)
        self.pids, self.book, self.p, self.rnd = sorted(pids), book, params, rnd
        self.nonce = os.urandom(16)
        self.graph = graph.harary(self.pids, params.degree)
        fewest = min((len(vs) + 1 for vs in self.graph.values()), default=0)
        if fewest < params.threshold:
            raise SecAggAbort(f"round {rnd}: {len(self.pids)} client(s) give some client only {fewest} share "
                              f"holder(s), fewer than the threshold {params.threshold}")
        self.seed, self.drops = seed, drops or {}
        self._quantize(params, layout)
        self.s_pk: dict[int, bytes] = {}
        self.b_commit: dict[int, bytes] = {}             # each sharer's commitment to its self-mask seed
        self.boxes: dict[int, dict[int, bytes]] = {}    # receiver → sender → sealed shares
        self.u1: set[int] = set()
        self.u2: set[int] = set()
        self.b_shares: dict[int, dict[int, bytes]] = {}  # owner → holder x → share
        self.s_shares: dict[int, dict[int, bytes]] = {}

    def retune(self, params: RoundParams) -> None:
        """Quantize with `params` (set at the mask stage: adaptive clipping may have moved C since
        a share-ahead round was set up); the graph and threshold its shares were made for stay."""
        if (params.degree, params.threshold) != (self.p.degree, self.p.threshold):
            raise SecAggAbort(f"round {self.rnd}: shares were made for k = {self.p.degree}, t = {self.p.threshold}, "
                              f"the round now needs k = {params.degree}, t = {params.threshold}")
        if self.tally.size and params.bits != self.tally.bits:
            raise SecAggAbort(f"round {self.rnd}: its metric sums were laid out for {self.tally.bits} bits, "
                              f"the round now needs {params.bits}")
        if self.u2:
            raise SecAggAbort(f"round {self.rnd}: cannot change the quantization after masked vectors arrived")
        self._quantize(params, self.quantizer.layout)

    def _quantize(self, params: RoundParams, layout: Layout) -> None:
        self.p = params
        self.quantizer = Quantizer(layout, params.bits, params.table_range, params.weight_range, params.ring,
                                   EXTRA_RANGE, self.tally.size)
        self.total = np.zeros(layout.size, dtype=self.quantizer.dtype)

    def _base(self, stage: str) -> dict:
        return {"round": self.rnd, "seed": self.seed, "drop": float(self.drops.get(stage, 0.0))}

    # ---- stage 1: share keys
    def share_content(self, pid: int) -> RecordDict:
        holders = self.graph[pid]
        return msg.record(**self._base("share"), nonce=self.nonce, threshold=self.p.threshold,
                          c_pk=self.book.channel[pid], holders=holders,
                          holder_keys=[self.book.channel[h] for h in holders])

    def on_share(self, pid: int, content: RecordDict) -> None:
        c = msg.get(content)
        to, boxes = msg.ints(c, "to"), msg.blobs(c, "boxes")
        if to != self.graph[pid] or len(boxes) != len(to):
            raise proto.SecAggClientError(f"client {pid} sent shares to {to}, expected {self.graph[pid]}")
        commitment = bytes(c["b_commit"])
        if len(commitment) != 32:
            raise proto.SecAggClientError(f"client {pid} sent a {len(commitment)}-byte seed commitment, expected 32")
        self.b_commit[pid] = commitment
        self.s_pk[pid] = bytes(c["s_pk"])
        for h, box in zip(to, boxes):
            self.boxes.setdefault(h, {})[pid] = box
        self.u1.add(pid)

    # ---- stage 2: train and mask
    def mask_record(self, pid: int, noise_std: float = 0.0, dither: bool = False,
                    bit_noise_std: float = 0.0, floor: int | None = None) -> ConfigRecord:
        """`floor`: the fewest survivors the round unmasks, which the noise shares are calibrated
        for (σ_i = σ/√(floor − 1)); a device's policy reads z off it (fedembed/deploy/policy.py)."""
        peers = [v for v in self.graph[pid] if v in self.u1]
        senders = [v for v in peers if v in self.boxes.get(pid, {})]
        return ConfigRecord({**self._base("mask"), "peers": peers, "peer_keys": [self.s_pk[v] for v in peers],
                             "from": senders, "boxes": [self.boxes[pid][v] for v in senders],
                             "bits": self.p.bits, "table_range": self.p.table_range,
                             "weight_range": self.p.weight_range, "ring": self.p.ring,
                             "noise_std": float(noise_std), "dither": bool(dither),
                             "extra": self.quantizer.layout.extra, "extra_range": EXTRA_RANGE,
                             "tally": list(self.tally.names),
                             "bit_noise_std": float(bit_noise_std),
                             "cohort": len(self.u1),           # m, the clients that shared keys
                             "floor": int(floor if floor is not None else max(len(self.u1), 1))})

    def add_masked(self, pid: int, y: np.ndarray) -> None:
        if pid not in self.u1 or pid in self.u2:
            raise proto.SecAggClientError(f"client {pid} sent a masked vector it was not asked for")
        if y.dtype != self.total.dtype or y.shape != self.total.shape:
            raise proto.SecAggClientError(f"client {pid} sent a masked vector of {y.dtype}{list(y.shape)}, "
                                          f"expected {self.total.dtype}[{self.total.size}]")
        self.total += y
        self.u2.add(pid)

    # ---- stage 3: unmask
    def check_survivors(self, floor: int | None = None) -> None:
        """Abort unless enough masked updates arrived to unmask: `secagg.min_clients`, or the floor
        the round's noise shares were calibrated for (fedembed/secagg/params.py survivor_floor)."""
        need = max(self.p.min_clients, 1, floor or 0)
        if len(self.u2) < need:
            what = f"the {need} the noise shares were calibrated for" if floor and floor > self.p.min_clients \
                else f"secagg.min_clients = {self.p.min_clients}"
            raise SecAggAbort(f"round {self.rnd}: {len(self.u2)} masked update(s) arrived, fewer than {what}")

    def unmask_content(self, pid: int) -> RecordDict:
        mine = [pid, *self.graph[pid]]
        return msg.record(**self._base("unmask"), survivors=sorted(v for v in mine if v in self.u2),
                          dropped=sorted(v for v in self.graph[pid] if v in self.u1 - self.u2))

    def on_unmask(self, pid: int, content: RecordDict) -> None:
        c = msg.get(content)
        for owner, share in zip(msg.ints(c, "b_from"), msg.blobs(c, "b_shares")):
            self.b_shares.setdefault(owner, {})[pid + 1] = share
        for owner, share in zip(msg.ints(c, "s_from"), msg.blobs(c, "s_shares")):
            self.s_shares.setdefault(owner, {})[pid + 1] = share

    def _reconstruct(self, table: dict[int, dict[int, bytes]], owner: int, what: str) -> bytes:
        got = table.get(owner, {})
        if len(got) < self.p.threshold:
            raise SecAggAbort(f"round {self.rnd}: {len(got)} share(s) of client {owner}'s {what}, "
                              f"{self.p.threshold} needed (too many clients dropped out)")
        try:
            return shamir.combine(got, self.p.threshold)
        except shamir.ShamirError as exc:
            raise SecAggAbort(f"round {self.rnd}: client {owner}'s {what}: {exc}") from None

    def finish(self, dither: bool = False, floor: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The unmasked ring sum of the survivors' quantized updates (and Σ(u − ½) when dithered)."""
        self.check_survivors(floor)
        seeds = {u: self._reconstruct(self.b_shares, u, "self-mask seed") for u in sorted(self.u2)}
        for u, b in seeds.items():
            if not opens(self.b_commit[u], b, self.nonce, u):
                raise SecAggAbort(f"round {self.rnd}: client {u}'s self-mask seed, rebuilt from the shares of "
                                  f"holders {[x - 1 for x in list(self.b_shares[u])[:self.p.threshold]]}, does not "
                                  f"match its commitment: a share is corrupted")
        dropped = sorted(self.u1 - self.u2)
        mask_keys = {u: self._reconstruct(self.s_shares, u, "mask key") for u in dropped}
        for u, s_sk in mask_keys.items():
            if keys.public_of(s_sk) != self.s_pk[u]:
                raise SecAggAbort(f"round {self.rnd}: the shares of client {u}'s mask key are inconsistent")
        ex = Expander()
        total = self.total
        for u, b in seeds.items():
            ex.add(total, proto.self_mask_key(b, self.nonce), -1)
        for u, s_sk in mask_keys.items():
            for v in self.graph[u]:
                if v in self.u2:      # v added sign(v, u)·PRG(s_uv): take it out
                    ex.add(total, proto.pair_mask_key(s_sk, self.s_pk[v], self.nonce), -1 if v < u else 1)
        dither_sum = None
        if dither:
            dither_sum = np.full(total.size, -0.5 * len(seeds))
            for b in seeds.values():
                dither_sum += self.quantizer.uniform(proto.dither_key(b, self.nonce), None)
        return total, dither_sum
