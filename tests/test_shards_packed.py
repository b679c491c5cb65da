"""The packed shard layout of large federations gives every client the same arrays as per-client files."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

import fedembed.data.shards as shards


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), clients=st.integers(1, 9), docs=st.integers(0, 200), flush=st.integers(1, 80))
def test_packed_and_per_client_shards_hold_the_same_arrays(tmp_path_factory, seed, clients, docs, flush):
    rng = np.random.default_rng(seed)
    d1, d2 = tmp_path_factory.mktemp("files"), tmp_path_factory.mktemp("packed")
    old = shards._FLUSH_TOKENS
    shards._FLUSH_TOKENS = flush                     # several flushes: a client's shard in several segments
    try:
        w1, w2 = shards.ShardWriter(d1, clients, packed=False), shards.ShardWriter(d2, clients, packed=True)
        for _ in range(docs):
            c, ids, unit = int(rng.integers(clients)), rng.integers(0, 50, rng.integers(1, 9)), f"u{rng.integers(4)}"
            w1.append(c, ids, unit)
            w2.append(c, ids, unit)
        assert w1.close() == w2.close()
    finally:
        shards._FLUSH_TOKENS = old
    assert shards.is_packed(d2) and not shards.is_packed(d1) and len(list(d2.iterdir())) == 4
    for c in range(clients):
        a, b = shards.load_shard(d1, c), shards.load_shard(d2, c)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(shards.load_units(d1, c, len(a[1])), shards.load_units(d2, c, len(b[1])))


def test_large_federations_are_packed_by_default(tmp_path):
    assert shards.ShardWriter(tmp_path / "small", shards.PACKED_ABOVE).packed is False
    assert shards.ShardWriter(tmp_path / "large", shards.PACKED_ABOVE + 1).packed is True
