"""Key agreement and authenticated encryption of the Shamir shares in transit.

Each node keeps one long-lived X25519 *channel* key pair in its `context.state` (advertised
once); the per-round, per-direction AES-256-GCM key for the shares u sends v is
HKDF-SHA256(X25519(c_u, c_v), salt = the round's nonce, info = "share" ‖ u ‖ v), so no key
ever encrypts twice and a share can only be opened by its addressee. The *mask* key pair is
fresh every round (its secret key is Shamir-shared, and the server reconstructs it when the
node drops out, so it must never serve again).
"""
from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedembed.errors import FedembedError


class ShareError(FedembedError):
    """A share that does not decrypt, or a malformed key."""


def new_private() -> bytes:
    return X25519PrivateKey.generate().private_bytes_raw()


def public_of(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def agree(private: bytes, peer_public: bytes) -> bytes:
    """The X25519 shared secret (32 bytes); symmetric in the two parties."""
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:
        raise ShareError(f"bad X25519 key: {exc}") from None


def _share_key(private: bytes, peer_public: bytes, nonce: bytes, sender: int, receiver: int) -> bytes:
    info = b"fedembed/secagg/v1/share" + sender.to_bytes(8, "big") + receiver.to_bytes(8, "big")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=info).derive(agree(private, peer_public))


def seal(private: bytes, peer_public: bytes, nonce: bytes, sender: int, receiver: int, plaintext: bytes) -> bytes:
    """AES-GCM(plaintext) for `receiver`, bound to the round and both ids."""
    iv = os.urandom(12)
    aad = nonce + sender.to_bytes(8, "big") + receiver.to_bytes(8, "big")
    return iv + AESGCM(_share_key(private, peer_public, nonce, sender, receiver)).encrypt(iv, plaintext, aad)


def open_(private: bytes, peer_public: bytes, nonce: bytes, sender: int, receiver: int, box: bytes) -> bytes:
    aad = nonce + sender.to_bytes(8, "big") + receiver.to_bytes(8, "big")
    try:
        return AESGCM(_share_key(private, peer_public, nonce, receiver=receiver, sender=sender)).decrypt(
            box[:12], box[12:], aad)
    except InvalidTag:
        raise ShareError(f"the share from {sender} to {receiver} does not authenticate") from None
