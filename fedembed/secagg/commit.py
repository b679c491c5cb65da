"""The commitment to a client's self-mask seed: sent at the share stage, checked at reconstruction.

The server rebuilds each survivor's seed b from t Shamir shares and removes PRG(b) from the
sum. A corrupted share (a faulty holder, a bit flip) gives a different b, whose mask would
then be subtracted instead: a silently wrong aggregate. With the hash of b (bound to the
round's nonce and the client) in hand before any share is opened, the server recognises a
wrong reconstruction and aborts the round naming the client. b is 32 uniform bytes, so its
hash reveals nothing of it. (The mask key s needs no such hash: its public key, sent at the
same stage, already checks it.)
"""
from __future__ import annotations

import hashlib
import hmac

DOMAIN = b"fedembed-secagg-seed-commitment-v1"


def seed_commitment(b: bytes, nonce: bytes, pid: int) -> bytes:
    """SHA-256(domain ‖ nonce ‖ pid ‖ b): 32 bytes."""
    return hashlib.sha256(DOMAIN + bytes(nonce) + int(pid).to_bytes(8, "big", signed=True) + bytes(b)).digest()


def opens(commitment: bytes, b: bytes, nonce: bytes, pid: int) -> bool:
    """Whether `b` is the seed `commitment` was made for (constant-time comparison)."""
    return hmac.compare_digest(bytes(commitment), seed_commitment(b, nonce, pid))
