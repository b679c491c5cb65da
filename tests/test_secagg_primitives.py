"""SecAgg+'s building blocks: Shamir over a prime field, the AES-CTR mask PRG, sealed shares,
quantization into the ring, the neighbour graph, and that a masked vector looks uniform."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from fedembed.secagg import graph, keys, shamir
from fedembed.secagg.prg import Expander, derive_key, raw_keystream
from fedembed.secagg.quantize import Layout, Quantizer, levels, ring_bits

secret32 = st.binary(min_size=32, max_size=32)


@settings(max_examples=40, deadline=None)
@given(secret=secret32, n=st.integers(1, 12), data=st.data())
def test_shamir_reconstructs_at_exactly_the_threshold_and_not_below(secret, n, data):
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    shares = shamir.split(secret, t, xs)
    chosen = data.draw(st.permutations(xs))[:t]
    assert shamir.combine({x: shares[x] for x in chosen}, t) == secret
    if t > 1:
        fewer = {x: shares[x] for x in chosen[:t - 1]}
        with pytest.raises(shamir.ShamirError, match="cannot reconstruct"):
            shamir.combine(fewer, t)
        # interpolating t − 1 shares anyway gives an unrelated field element, not the secret
        assert shamir.interpolate(fewer) != int.from_bytes(secret, "big")


def test_fewer_than_threshold_shares_are_consistent_with_every_secret():
    """Perfect secrecy: for any candidate secret there is a degree t − 1 polynomial through it and
    the t − 1 shares seen, whose further shares reconstruct that candidate: they rule nothing out."""
    secret, t = os.urandom(32), 4
    shares = shamir.split(secret, t, [1, 2, 3, 4, 5])
    seen = {x: shares[x] for x in (1, 2, 3)}
    for candidate in (bytes(32), os.urandom(32), secret):
        pts = {**seen, 0: candidate.rjust(shamir.SHARE_BYTES, b"\0")}
        assert shamir.combine({**seen, 9: _eval_through(pts, 9)}, t) == candidate


def _eval_through(points: dict[int, bytes], x: int) -> bytes:
    """The Lagrange polynomial through `points`, evaluated at x (as a share)."""
    P = shamir.P
    pts = [(xi, int.from_bytes(y, "big")) for xi, y in points.items()]
    total = 0
    for i, (xi, yi) in enumerate(pts):
        num = den = 1
        for j, (xj, _) in enumerate(pts):
            if i != j:
                num, den = num * (x - xj) % P, den * (xi - xj) % P
        total = (total + yi * num * pow(den, -1, P)) % P
    return total.to_bytes(shamir.SHARE_BYTES, "big")


def test_shamir_refuses_bad_parameters():
    with pytest.raises(shamir.ShamirError, match="threshold"):
        shamir.split(bytes(32), 4, [1, 2, 3])
    with pytest.raises(shamir.ShamirError, match="distinct"):
        shamir.split(bytes(32), 2, [1, 1, 2])


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_prg_is_the_aes_ctr_keystream_whatever_the_chunking(dtype):
    key = derive_key(os.urandom(32), b"test")
    size = 300_001
    want = np.frombuffer(raw_keystream(key, size * np.dtype(dtype).itemsize), dtype=dtype)
    for chunk in (64, 4096, 1 << 20):
        got = Expander(chunk).stream(key, size, dtype)
        assert (got == want).all()
    acc = np.arange(size, dtype=dtype)
    ex = Expander()
    ex.add(acc, key)
    ex.add(acc, key, -1)
    assert (acc == np.arange(size, dtype=dtype)).all()
    assert not (Expander().stream(derive_key(os.urandom(32), b"test"), 8, dtype) == want[:8]).all()


def test_keys_are_derived_per_purpose_and_salt():
    s = os.urandom(32)
    assert len({derive_key(s, b"a"), derive_key(s, b"b"), derive_key(s, b"a", b"salt")}) == 3


def test_sealed_shares_open_only_for_their_addressee():
    a, b, c = keys.new_private(), keys.new_private(), keys.new_private()
    nonce = os.urandom(16)
    box = keys.seal(a, keys.public_of(b), nonce, 1, 2, b"share")
    assert keys.open_(b, keys.public_of(a), nonce, 1, 2, box) == b"share"
    with pytest.raises(keys.ShareError, match="does not authenticate"):
        keys.open_(c, keys.public_of(a), nonce, 1, 2, box)                 # another node
    with pytest.raises(keys.ShareError):
        keys.open_(b, keys.public_of(a), os.urandom(16), 1, 2, box)        # another round
    with pytest.raises(keys.ShareError):
        keys.open_(b, keys.public_of(a), nonce, 1, 2, box[:-1] + bytes([box[-1] ^ 1]))  # tampered


def test_pairwise_secrets_agree():
    a, b = keys.new_private(), keys.new_private()
    assert keys.agree(a, keys.public_of(b)) == keys.agree(b, keys.public_of(a))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 60), k=st.integers(0, 30))
def test_harary_graph_is_symmetric_with_the_asked_degree(n, k):
    k = min(k - k % 2, n - 1)
    g = graph.harary(list(range(n)), k)
    for u, vs in g.items():
        assert u not in vs and all(u in g[v] for v in vs)
        assert len(vs) == (n - 1 if n <= k + 1 else k)


def _quantizer(bits=16, ring=32, shapes=None):
    return Quantizer(Layout(shapes or {"a": (5, 4), "b": (3, 2)}), bits, 2.0, 10.0, ring)


def test_quantization_is_unbiased_and_the_ring_sum_decodes_exactly():
    q = _quantizer()
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, q.layout.size)
    x[q.layout.table_size:] = rng.integers(0, 8, q.layout.size - q.layout.table_size)
    q.clip(x)
    reps = [q.encode(x.copy(), None, rng) for _ in range(4000)]
    total = np.zeros(q.layout.size, dtype=q.dtype)
    for r in reps:
        total += r
    tables, weights = q.decode(total)
    mean = np.concatenate([*(tables[k].ravel() for k in sorted(tables)),
                           *(weights[k].ravel() for k in sorted(weights))]) / len(reps)
    steps = np.where(np.arange(q.layout.size) < q.layout.table_size, 2.0, 10.0) / levels(16)
    assert np.all(np.abs(mean - x) < 6 * steps / np.sqrt(len(reps)) + 1e-12)


def test_the_ring_is_wide_enough_for_the_clients_and_never_wraps():
    assert ring_bits(16, 1000) == 32 and ring_bits(24, 200) == 32 and ring_bits(24, 300) == 64
    assert ring_bits(40, 10_000) == 64 and ring_bits(62, 4) is None
    n, q = 255, _quantizer(bits=24, ring=ring_bits(24, 255))
    total = np.zeros(q.layout.size, dtype=q.dtype)
    for _ in range(n):                                 # every client at the top of the range
        x = np.full(q.layout.size, 1e9)
        q.clip(x)
        total += q.encode(x)
    tables, _ = q.decode(total)
    assert np.allclose(tables["a"], n * 2.0)


def test_subtractive_dither_error_is_within_half_a_step():
    q = _quantizer()
    x = np.random.default_rng(1).normal(0, 1, q.layout.size)
    q.clip(x)
    key = os.urandom(32)
    y = q.encode(x.copy(), key)
    tables, weights = q.decode(y, q.uniform(key, None) - 0.5)
    got = q.layout.flatten(tables, weights)
    steps = np.where(np.arange(q.layout.size) < q.layout.table_size, 2.0, 10.0) / levels(16)
    assert np.all(np.abs(got - x) <= steps / 2 + 1e-12)


def test_what_the_server_receives_from_one_client_is_uniform_over_the_ring():
    """A constant update, masked: every byte lane of the 32-bit words passes a χ² uniformity test,
    and neighbouring words are uncorrelated."""
    from secagg_sim import masked_constant

    y = masked_constant(200_000)
    for shift in (0, 8, 16, 24):
        counts = np.bincount(((y >> shift) & 0xFF).astype(np.int64), minlength=256)
        assert stats.chisquare(counts).pvalue > 1e-4
    top = (y >> 16).astype(np.float64)
    assert abs(np.corrcoef(top[:-1], top[1:])[0, 1]) < 0.02
    assert stats.kstest(y / 2.0 ** 32, "uniform").pvalue > 1e-4
