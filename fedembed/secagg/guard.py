"""What a client refuses from the server: the parameters and requests that would let a server
that lies (about the threshold, the peers, who dropped out) unmask one client's update.

The server chooses the round's protocol parameters; a client that took them on trust could be
unmasked by a server that sends it a low threshold. Each check below closes one such door
(Bell et al. 2020, §3–4; Flower's SecAgg+ mod refuses the same requests):

- share:  2t > holders + 1. The client's two secrets (self-mask seed b, mask key s) are each
          shared among its k + 1 holders (its k neighbours and itself), and an honest holder
          gives, per peer and round, the share of b or that of s, never both. With 2t ≤ k + 1
          two disjoint sets of t holders exist: a server that tells one set "u survived" and the
          other "u dropped" (a split view) gets both b_u and s_u and strips every mask off u's
          vector. With 2t > k + 1 the two sets cannot both reach t.
          Also t ≤ k + 1 (else nobody could unmask it), distinct holders, one key each.
- mask:   one mask request per round (two masked vectors under different peer sets differ by
          the masks of the peers left out, which the server can then remove); at least one peer
          and at least t − 1 of them (a vector masked with its self mask alone is the update once
          b is reconstructed, as it is for every survivor), all of them among the holders the
          client shared with.
- unmask: never both secrets of one peer, only peers it holds shares of, and nothing when fewer
          than t of its peers survived (the server could otherwise learn a lone update).

A refusal is a `Refused` error: the ClientApp answers it with an error reply, a dropout of
that stage for the server.
"""
from __future__ import annotations

from fedembed.secagg.errors import Refused


def check_share(pid: int, threshold: int, holders: list[int], holder_keys: list[bytes]) -> None:
    """The share request's threshold and holders (before any secret is made or shared)."""
    k1 = len(holders) + 1
    if pid in holders or len(set(holders)) != len(holders):
        raise Refused(f"client {pid}: the share holders {holders} repeat a holder or include this client")
    if len(holder_keys) != len(holders):
        raise Refused(f"client {pid}: {len(holder_keys)} channel keys for {len(holders)} share holders")
    if not 2 * threshold > k1:
        raise Refused(f"client {pid}: threshold t = {threshold} for {k1} share holders would let a server that "
                      f"lies about dropouts rebuild both of its secrets (needs 2t > holders + 1); refusing to share")
    if threshold > k1:
        raise Refused(f"client {pid}: threshold t = {threshold} exceeds its {k1} share holders; refusing to share")


def check_mask(pid: int, round_state, peers: list[int], peer_keys: list[bytes], holders: list[int],
               threshold: int) -> None:
    """The mask request against this round's state (`round_state`: what `share` kept)."""
    rnd = int(round_state["round"])
    if bool(round_state.get("masked", False)):
        raise Refused(f"client {pid}: a second mask request for round {rnd}; refusing (one masked vector a round)")
    if not peers:
        raise Refused(f"client {pid}: the mask request of round {rnd} names no peer; its vector would carry "
                      f"its self mask only, which the server removes; refusing to mask")
    if len(set(peers)) != len(peers) or len(peer_keys) != len(peers):
        raise Refused(f"client {pid}: the mask request of round {rnd} repeats a peer or lacks a peer's key")
    strangers = sorted(set(peers) - set(holders))
    if strangers:
        raise Refused(f"client {pid}: peers {strangers} of round {rnd} are not among the holders it shared with")
    if len(peers) < threshold - 1:
        raise Refused(f"client {pid}: {len(peers)} peer(s) in round {rnd}, fewer than t − 1 = {threshold - 1}; "
                      f"refusing to mask")


def check_unmask(pid: int, threshold: int, survivors: set[int], dropped: set[int], held: set[int]) -> None:
    """The unmask request: which peers the server says survived and dropped."""
    if survivors & dropped:
        raise Refused(f"client {pid}: the server calls {sorted(survivors & dropped)} both survived "
                      f"and dropped; refusing to unmask")
    unknown = (survivors | dropped) - held
    if unknown:
        raise Refused(f"client {pid} holds no shares of {sorted(unknown)}")
    if len(survivors) < threshold:
        raise Refused(f"client {pid}: only {len(survivors)} of its peers survived, fewer than the "
                      f"threshold {threshold}; refusing to unmask")
