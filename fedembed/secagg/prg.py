"""Mask expansion: a 256-bit secret → a pseudo-random vector over Z_{2^w}, by AES-256-CTR.

Why not Flower's `pseudo_rand_gen` (flwr/common/secure_aggregation/secaggplus_utils.py):
it folds the shared secret to a 32-bit seed for NumPy's Mersenne Twister, so a curious
server can strip any mask by trying 2^32 seeds, and MT19937 is predictable from its
output anyway. Here the mask key is HKDF-SHA256 of the full secret (X25519 output or a
32-byte self-mask seed) with a per-purpose, per-round `info`, and the mask is the AES-CTR
keystream itself, read as uint32/uint64 — a standard PRG whose security rests on AES.
Each key is used for one keystream only, so the all-zero counter block is safe.

Speed: the keystream is written with `update_into` into a reused buffer, in chunks that
stay in cache, and added to (or subtracted from) the accumulator in place; the cost is the
cipher's own (see bench/secagg.py for the measured ratio).
"""
from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE = bytes(16)
CHUNK_BYTES = 1 << 20          # keystream produced per call: large enough to amortise, small enough for L2/L3


def derive_key(secret: bytes, purpose: bytes, salt: bytes = b"") -> bytes:
    """A 256-bit AES key for one purpose (self mask, pair mask, dither) of one round."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt or None,
                info=b"fedembed/secagg/v1/" + purpose).derive(secret)


class Expander:
    """Adds ±AES-CTR(key) keystreams into uint vectors; reuses its buffers across calls."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.chunk = chunk_bytes
        self._zeros = bytes(chunk_bytes)
        self._out = bytearray(chunk_bytes + 15)       # update_into needs block_size − 1 spare bytes

    def add(self, acc: np.ndarray, key: bytes, sign: int = 1) -> None:
        """acc += sign · PRG(key) (mod 2^w, w = acc's bit width), in place."""
        enc = Cipher(algorithms.AES(key), modes.CTR(_NONCE)).encryptor()
        flat = acc.reshape(-1)
        per = self.chunk // flat.itemsize
        view = memoryview(self._zeros)
        for start in range(0, flat.size, per):
            part = flat[start:start + per]
            nbytes = part.size * part.itemsize
            enc.update_into(view[:nbytes], self._out)
            mask = np.frombuffer(self._out, dtype=flat.dtype, count=part.size)
            if sign > 0:
                part += mask
            else:
                part -= mask

    def stream(self, key: bytes, size: int, dtype) -> np.ndarray:
        """PRG(key) as a fresh vector of `size` elements of `dtype` (for dither and tests)."""
        out = np.zeros(size, dtype=dtype)
        self.add(out, key)
        return out


def raw_keystream(key: bytes, nbytes: int) -> bytes:
    """The cipher alone, for the benchmark's physical limit."""
    return Cipher(algorithms.AES(key), modes.CTR(_NONCE)).encryptor().update(bytes(nbytes))
