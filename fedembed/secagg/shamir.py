"""Shamir t-of-n secret sharing of 32-byte secrets over the prime field GF(2^521 − 1).

A prime field (not Flower's GF(2^128) chunks via pycryptodome) so a 256-bit secret is one
field element and a share is one field element (66 bytes) plus its x-coordinate. Any t
shares give the secret back by Lagrange interpolation at 0; any t − 1 are independent of
it (for every candidate secret there is exactly one polynomial through them).
"""
from __future__ import annotations

import secrets

P = 2 ** 521 - 1                # a Mersenne prime
SHARE_BYTES = 66


class ShamirError(ValueError):
    """Too few or inconsistent shares."""


def split(secret: bytes, threshold: int, xs: list[int]) -> dict[int, bytes]:
    """Shares of `secret` for the non-zero x-coordinates `xs`; any `threshold` reconstruct it."""
    if not 1 <= threshold <= len(xs):
        raise ShamirError(f"threshold {threshold} must be between 1 and the number of shares {len(xs)}")
    if len(set(xs)) != len(xs) or any(not 0 < x < P for x in xs):
        raise ShamirError("share x-coordinates must be distinct and non-zero")
    coeffs = [int.from_bytes(secret, "big")] + [secrets.randbelow(P) for _ in range(threshold - 1)]
    out = {}
    for x in xs:
        y = 0
        for c in reversed(coeffs):      # Horner
            y = (y * x + c) % P
        out[x] = y.to_bytes(SHARE_BYTES, "big")
    return out


def combine(shares: dict[int, bytes], threshold: int, length: int = 32) -> bytes:
    """The secret from at least `threshold` shares (x → share); fewer is an error, never a guess."""
    if len(shares) < threshold:
        raise ShamirError(f"{len(shares)} share(s) cannot reconstruct a secret shared with threshold {threshold}")
    value = interpolate(dict(list(shares.items())[:threshold]))
    if value >= 2 ** (8 * length):
        raise ShamirError("shares are inconsistent: the reconstructed value is not a secret of this length")
    return value.to_bytes(length, "big")


def interpolate(shares: dict[int, bytes]) -> int:
    """The polynomial through `shares`, evaluated at 0 (no threshold check: for tests of secrecy)."""
    pts = [(x, int.from_bytes(y, "big")) for x, y in shares.items()]
    total = 0
    for i, (xi, yi) in enumerate(pts):
        num = den = 1
        for j, (xj, _) in enumerate(pts):
            if i != j:
                num = num * (-xj) % P
                den = den * (xi - xj) % P
        total = (total + yi * num * pow(den, -1, P)) % P
    return total

