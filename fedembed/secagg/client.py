"""The client's side of SecAgg+: one handler per stage, secrets kept in the node's `context.state`.

Stage by stage (fedembed.secagg.messages names the records):
  keys    make (once) the node's long-lived X25519 channel key pair; send the public half.
  share   check the threshold and holders it is given (fedembed.secagg.guard); make this round's
          mask key pair s and self-mask seed b; Shamir-share both among the node's holders (its
          neighbours and itself) with threshold t, each share pair sealed for its holder; send
          the mask public key, the sealed shares and a commitment to b (fedembed.secagg.commit).
  mask    check the request (once a round, enough peers, all of them holders); open the shares
          addressed to this node and keep them; train, and run the update
          through its pipeline, whose last stages (fedembed/secagg/stages.py) flatten, clip to
          the ranges, (add the noise share,) quantize and add the self mask PRG(b) and, for every
          peer v that completed `share`, ±PRG(X25519(s_u, s_v)) (+ if u < v); send only that vector.
  unmask  for each peer the server says survived, its self-mask share; for each peer it says
          dropped, its mask-key share — never both for one peer, and nothing if fewer than t
          peers survived (the server could otherwise learn a lone update). An unmask message
          may also carry the next round's share request (`secagg.share_ahead`): answered after
          this round's secrets are gone, with fresh ones, exactly as a `share` message would be.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from fedembed.errors import FedembedError
from fedembed.secagg import guard, keys, messages as msg, shamir
from fedembed.secagg.commit import seed_commitment
from fedembed.secagg.errors import Refused, SecAggClientError  # noqa: F401 (re-exported: proto.Refused)
from fedembed.secagg.prg import derive_key
from fedembed.secagg.quantize import Layout, Quantizer
from fedembed.secagg.tally import Tally
from fedembed.updates import ClientUpdate


class Dropout(FedembedError):
    """A simulated dropout (secagg.drop_<stage>): the client fails this stage on purpose."""


def maybe_drop(c: ConfigRecord, stage: str, pid: int) -> None:
    p = float(c.get("drop", 0.0))
    if p > 0:
        rnd = int(c.get("round", 0))
        index = ("keys", "share", "mask", "unmask").index(stage)
        if np.random.default_rng([int(c.get("seed", 0)), rnd, pid, index]).random() < p:
            raise Dropout(f"client {pid} drops out at stage {stage!r} of round {rnd} (secagg.drop_{stage})")


def self_mask_key(b: bytes, nonce: bytes) -> bytes:
    return derive_key(b, b"self-mask", nonce)


def dither_key(b: bytes, nonce: bytes) -> bytes:
    return derive_key(b, b"dither", nonce)


def pair_mask_key(s_private: bytes, peer_public: bytes, nonce: bytes) -> bytes:
    return derive_key(keys.agree(s_private, peer_public), b"pair-mask", nonce)


# ---- stage handlers: content in, content out; `state` is the node's context.state

def on_keys(content: RecordDict, state: RecordDict, pid: int) -> RecordDict:
    maybe_drop(msg.get(content), "keys", pid)
    rec = state.config_records.get(msg.STATE_KEYS)
    if rec is None:
        rec = ConfigRecord({"c_sk": keys.new_private()})
        state[msg.STATE_KEYS] = rec
    return msg.record(c_pk=keys.public_of(bytes(rec["c_sk"])))


def on_share(content: RecordDict, state: RecordDict, pid: int) -> RecordDict:
    c = msg.get(content)
    maybe_drop(c, "share", pid)
    own = state.config_records.get(msg.STATE_KEYS)
    if own is None:
        raise SecAggClientError(f"client {pid} has no channel key (its state was lost); it sits this round out")
    if bytes(c["c_pk"]) != keys.public_of(bytes(own["c_sk"])):
        raise SecAggClientError(f"client {pid}: the server holds a stale channel key for it")
    c_sk, nonce, t = bytes(own["c_sk"]), bytes(c["nonce"]), int(c["threshold"])
    holders, holder_keys = msg.ints(c, "holders"), msg.blobs(c, "holder_keys")
    guard.check_share(pid, t, holders, holder_keys)
    s_sk, b = keys.new_private(), os.urandom(32)
    xs = [h + 1 for h in [pid, *holders]]          # Shamir x-coordinate: partition id + 1
    b_shares, s_shares = shamir.split(b, t, xs), shamir.split(s_sk, t, xs)
    boxes = [keys.seal(c_sk, pk, nonce, pid, h, b_shares[h + 1] + s_shares[h + 1])
             for h, pk in zip(holders, holder_keys)]
    state[msg.STATE_ROUND] = ConfigRecord({
        "round": int(c["round"]), "nonce": nonce, "threshold": t, "s_sk": s_sk, "b": b,
        "holders": holders, "holder_keys": holder_keys,
        "got_from": [pid], "got_b": [b_shares[pid + 1]], "got_s": [s_shares[pid + 1]]})
    return msg.record(s_pk=keys.public_of(s_sk), to=holders, boxes=boxes, b_commit=seed_commitment(b, nonce, pid))


def round_state(state: RecordDict, rnd: int, pid: int) -> ConfigRecord:
    st = state.config_records.get(msg.STATE_ROUND)
    if st is None or int(st["round"]) != rnd:
        raise SecAggClientError(f"client {pid} holds no secure-aggregation state for round {rnd}")
    return st


def open_shares(c: ConfigRecord, st: ConfigRecord, c_sk: bytes, pid: int) -> None:
    """Open the sealed shares from peers that completed `share`; keep them for `unmask`."""
    channel = dict(zip(msg.ints(st, "holders"), msg.blobs(st, "holder_keys")))
    nonce = bytes(st["nonce"])
    got_from, got_b, got_s = msg.ints(st, "got_from"), msg.blobs(st, "got_b"), msg.blobs(st, "got_s")
    for sender, box in zip(msg.ints(c, "from"), msg.blobs(c, "boxes")):
        if sender not in channel:
            raise SecAggClientError(f"client {pid} got shares from {sender}, which is not its neighbour")
        plain = keys.open_(c_sk, channel[sender], nonce, sender, pid, box)
        got_from.append(sender)
        got_b.append(plain[:shamir.SHARE_BYTES])
        got_s.append(plain[shamir.SHARE_BYTES:])
    st["got_from"], st["got_b"], st["got_s"] = got_from, got_b, got_s


def tally(c: ConfigRecord) -> Tally:
    """The metric sums the mask request asks for (fedembed/secagg/tally.py)."""
    try:
        return Tally(tuple(str(n) for n in c.get("tally", [])), int(c["bits"]))
    except ValueError as exc:
        raise SecAggClientError(f"malformed mask request: {exc}") from None


def quantizer(c: ConfigRecord, shapes: dict[str, tuple[int, ...]]) -> Quantizer:
    try:
        return Quantizer(Layout(shapes, int(c.get("extra", 0))), int(c["bits"]), float(c["table_range"]),
                         float(c["weight_range"]), int(c["ring"]), float(c.get("extra_range", 1.0)), tally(c).size)
    except ValueError as exc:
        raise SecAggClientError(f"malformed mask request: {exc}") from None


@dataclass
class MaskContext:
    """What this client's mask stage was told and holds for the round: the server's mask record
    (ranges, bits, peers and their mask keys, noise share) and the round's own secrets. The
    composition root builds the transport's stages from it (fedembed/secagg/stages.py)."""
    pid: int
    record: ConfigRecord
    secrets: ConfigRecord
    rng: np.random.Generator | None = None

    def quantizer(self, shapes: dict[str, tuple[int, ...]]) -> Quantizer:
        return quantizer(self.record, shapes)

    @property
    def tally(self) -> Tally:
        return tally(self.record)

    @property
    def nonce(self) -> bytes:
        return bytes(self.secrets["nonce"])

    @property
    def dither(self) -> bool:
        return bool(self.record.get("dither", False))

    @property
    def dither_key(self) -> bytes | None:
        return dither_key(bytes(self.secrets["b"]), self.nonce) if self.dither else None

    @property
    def noise_std(self) -> float:
        return float(self.record.get("noise_std", 0.0))

    @property
    def bit_noise_std(self) -> float:
        return float(self.record.get("bit_noise_std", 0.0))

    def masks(self) -> list[tuple[bytes, int]]:
        """(key, sign) of every mask this client adds: its self mask, then ±PRG(s_uv) per peer (+ if u < v)."""
        nonce, s_sk = self.nonce, bytes(self.secrets["s_sk"])
        out = [(self_mask_key(bytes(self.secrets["b"]), nonce), 1)]
        for peer, s_pk in zip(msg.ints(self.record, "peers"), msg.blobs(self.record, "peer_keys")):
            out.append((pair_mask_key(s_sk, s_pk, nonce), 1 if self.pid < peer else -1))
        return out


def on_unmask(content: RecordDict, state: RecordDict, pid: int) -> RecordDict:
    c = msg.get(content)
    maybe_drop(c, "unmask", pid)
    st = round_state(state, int(c["round"]), pid)
    survivors, dropped = set(msg.ints(c, "survivors")), set(msg.ints(c, "dropped"))
    held = dict(zip(msg.ints(st, "got_from"), zip(msg.blobs(st, "got_b"), msg.blobs(st, "got_s"))))
    guard.check_unmask(pid, int(st["threshold"]), survivors, dropped, set(held))
    b_from = sorted(survivors)
    s_from = sorted(dropped)
    del state[msg.STATE_ROUND]       # one answer per round: a second request finds nothing
    reply = msg.record(b_from=b_from, b_shares=[held[u][0] for u in b_from],
                       s_from=s_from, s_shares=[held[u][1] for u in s_from])
    ahead = content.config_records.get(msg.NEXT)
    if ahead is not None:
        reply[msg.NEXT] = share_ahead(ahead, state, pid)
    return reply


def share_ahead(request: ConfigRecord, state: RecordDict, pid: int) -> ConfigRecord:
    """The next round's `share` answer, or the reason there is none: this round's unmask
    answer stands either way (the server counts the client out of the next round's sharing
    only)."""
    try:
        return msg.get(on_share(RecordDict({msg.SECAGG: request}), state, pid))
    except FedembedError as exc:
        return ConfigRecord({msg.NEXT_ERROR: str(exc)})
    except (KeyError, ValueError, TypeError) as exc:     # a malformed request must not cost the unmask answer
        return ConfigRecord({msg.NEXT_ERROR: f"malformed share request: {exc!r}"})


def on_mask(content: RecordDict, state: RecordDict, pid: int,
            train: Callable[[RecordDict, MaskContext], ClientUpdate],
            rng: np.random.Generator | None = None) -> ClientUpdate:
    """Open the shares, then train: `train` gives the update from this message, run through the
    whole pipeline the composition root built for this mask context (its last stages noise,
    quantize and mask it), so the returned update's `vector` is what goes to the server."""
    c = msg.get(content)
    maybe_drop(c, "mask", pid)
    st = round_state(state, int(c["round"]), pid)
    guard.check_mask(pid, st, msg.ints(c, "peers"), msg.blobs(c, "peer_keys"), msg.ints(st, "holders"),
                     int(st["threshold"]))
    st["masked"] = True              # one mask request a round: a second one is refused
    own = state.config_records.get(msg.STATE_KEYS)
    if own is None:
        raise SecAggClientError(f"client {pid} lost its channel key during the round")
    open_shares(c, st, bytes(own["c_sk"]), pid)
    update = train(content, MaskContext(pid, c, st, rng))
    if update.vector is None:
        raise SecAggClientError(f"client {pid}: the update pipeline did not produce a masked vector")
    return update
