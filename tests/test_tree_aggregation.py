"""DP-FTRL's tree aggregation: node structure, noisy prefix sums, noise levels, restarts, resume, shares."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fedembed.privacy.tree import (ClientShare, TreeAggregator, TreeNoise, covering_nodes, final_noise_factor, new_seed,
                                   prefix_nodes, replaced_nodes)

SHAPES = {"in": (6, 3), "out": (6, 3)}


def _dyadic_cover(t: int) -> list[tuple[int, int]]:
    """[1, t] as aligned dyadic blocks, greedily from the left (an independent construction):
    each block (a, b] is the longest 2^h with 2^h | a and a + 2^h ≤ t."""
    out, a = [], 0
    while a < t:
        h = 0
        while (a % (2 ** (h + 1)) == 0) and a + 2 ** (h + 1) <= t:
            h += 1
        out.append((a, a + 2 ** h))
        a += 2 ** h
    return out


def _rounds(rng: np.random.Generator, n: int, shapes=SHAPES) -> list[dict[str, np.ndarray]]:
    return [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(n)]


# ---- the node structure

@settings(max_examples=200, deadline=None)
@given(t=st.integers(1, 5000))
def test_prefix_nodes_are_the_greedy_dyadic_cover(t):
    ours = sorted((s - (s & -s), s) for s in prefix_nodes(t))
    assert ours == _dyadic_cover(t)
    assert len(ours) == bin(t).count("1") <= math.floor(math.log2(t)) + 1


@settings(max_examples=100, deadline=None)
@given(length=st.integers(1, 600), data=st.data())
def test_covering_nodes_are_exactly_the_released_nodes_holding_a_round(length, data):
    s = data.draw(st.integers(1, length))
    released = {blk for t in range(1, length + 1) for blk in _dyadic_cover(t)}
    holding = sorted(b for a, b in released if a < s <= b)
    assert sorted(covering_nodes(s, length)) == holding
    assert len(holding) <= math.floor(math.log2(length)) + 1


@settings(max_examples=200, deadline=None)
@given(s=st.integers(1, 5000))
def test_replaced_nodes_turn_prefix_s_minus_1_into_prefix_s(s):
    before, after = set(prefix_nodes(s - 1)), set(prefix_nodes(s))
    assert after == (before - set(replaced_nodes(s))) | {s}
    assert set(replaced_nodes(s)) <= before


# ---- the release

@pytest.mark.parametrize("restart_every", [0, 5])
def test_without_noise_the_increments_are_the_round_sums(restart_every):
    rounds = _rounds(np.random.default_rng(1), 12)
    agg = TreeAggregator(SHAPES, std=0.0, seed=new_seed(), restart_every=restart_every)
    for g in rounds:
        out = agg.add(g)
        for k in SHAPES:
            np.testing.assert_array_equal(out[k], g[k])


@settings(max_examples=15, deadline=None)
@given(steps=st.integers(1, 40), restart_every=st.integers(0, 9), seed=st.integers(0, 2 ** 64))
def test_applied_increments_are_the_noisy_prefix_sums_of_each_tree(steps, restart_every, seed):
    """Σ of the increments = Σ_trees (the tree's true sum + the noise of its own dyadic cover),
    node noises looked up by (tree, node) and summed over the independently built cover."""
    std = 0.7
    rounds = _rounds(np.random.default_rng(seed % 1000), steps)
    agg = TreeAggregator(SHAPES, std=std, seed=seed, restart_every=restart_every)
    applied = {k: np.zeros(s) for k, s in SHAPES.items()}
    for g in rounds:
        for k, a in agg.add(g).items():
            applied[k] += a
    noise = TreeNoise(SHAPES, std, seed, restart_every)
    expected = {k: sum(g[k] for g in rounds) for k in SHAPES}
    r = restart_every or steps
    for tree in range((steps - 1) // r + 1):
        length = min(r, steps - tree * r)
        for _, b in _dyadic_cover(length):
            for k, a in noise.node(tree, b).items():
                expected[k] += std * a
    for k in SHAPES:
        np.testing.assert_allclose(applied[k], expected[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t", [1, 2, 3, 7, 8, 12, 31])
def test_prefix_noise_has_variance_popcount_sigma_squared(t):
    """The noise of prefix t is the sum of popcount(t) independent N(0, σ²) nodes; the
    increment's, 1 + |replaced| of them."""
    sigma, shape = 1.7, (300, 200)   # n = 60,000: the sample sd's relative error is ≈ 0.3 %
    noise = TreeNoise({"t": shape}, sigma, seed=12345)
    prefix = noise.prefix(t)["t"]
    assert prefix.std() == pytest.approx(sigma * math.sqrt(bin(t).count("1")), rel=0.03)
    inc = noise.increment(t)["t"]
    assert inc.std() == pytest.approx(sigma * math.sqrt(1 + len(list(replaced_nodes(t)))), rel=0.03)
    assert abs(prefix.mean()) < 6 * prefix.std() / math.sqrt(prefix.size)
    if t > 1:
        np.testing.assert_allclose(noise.prefix(t - 1)["t"] + inc, prefix, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps, restart_every", [(1, 0), (7, 0), (12, 0), (12, 5), (20, 4), (9, 1)])
def test_final_noise_factor_is_the_std_of_the_applied_noise(steps, restart_every):
    sigma, shape = 0.5, (250, 200)
    agg = TreeAggregator({"t": shape}, sigma, new_seed(), restart_every)
    applied = sum(agg.add({"t": np.zeros(shape)})["t"] for _ in range(steps))
    assert applied.std() == pytest.approx(sigma * final_noise_factor(steps, restart_every), rel=0.03)


def test_node_noises_are_independent_across_nodes_trees_tables_and_seeds():
    n = 20_000
    a = TreeNoise({"x": (n,), "y": (n,)}, 1.0, seed=b"\x01" * 32, restart_every=4)
    b = TreeNoise({"x": (n,)}, 1.0, seed=b"\x02" * 32, restart_every=4)
    draws = [a.node(0, 1)["x"], a.node(0, 1)["y"], a.node(0, 2)["x"], a.node(1, 1)["x"], b.node(0, 1)["x"]]
    for i in range(len(draws)):
        for j in range(i + 1, len(draws)):
            assert abs(np.corrcoef(draws[i], draws[j])[0, 1]) < 5 / math.sqrt(n)
    np.testing.assert_array_equal(a.node(0, 1)["x"], draws[0])                 # regenerated, bit for bit
    fresh = [TreeAggregator({"x": (50,)}, 1.0).add({"x": np.zeros(50)})["x"] for _ in range(2)]
    assert not np.array_equal(fresh[0], fresh[1])                               # default seeds are fresh secrets


@pytest.mark.parametrize("restart_every, cut", [(0, 6), (0, 1), (4, 4), (4, 7), (3, 10)])
def test_resumed_aggregator_continues_bit_for_bit(restart_every, cut):
    rounds = _rounds(np.random.default_rng(3), 13)
    straight = TreeAggregator(SHAPES, 0.9, new_seed(), restart_every)
    first = TreeAggregator.from_state(SHAPES, straight.state())
    expected = [straight.add(g) for g in rounds]
    got = [first.add(g) for g in rounds[:cut]]
    state = json.loads(json.dumps(first.state()))
    assert len(json.dumps(state)) < 400                     # a few integers and the seed: no arrays
    resumed = TreeAggregator.from_state(SHAPES, state)
    got += [resumed.add(g) for g in rounds[cut:]]
    assert resumed.steps == 13
    for e, g in zip(expected, got):
        for k in SHAPES:
            np.testing.assert_array_equal(e[k], g[k])


def test_int_seeds_survive_the_state_too():
    agg = TreeAggregator(SHAPES, 1.0, seed=2 ** 200 + 5)
    agg.add({k: np.zeros(s) for k, s in SHAPES.items()})
    again = TreeAggregator.from_state(SHAPES, json.loads(json.dumps(agg.state())))
    z = {k: np.zeros(s) for k, s in SHAPES.items()}
    np.testing.assert_array_equal(agg.add(z)["in"], again.add(z)["in"])


def test_std_changes_only_when_a_tree_starts():
    agg = TreeAggregator({"t": (2, 2)}, 1.0, new_seed(), restart_every=3)
    assert agg.starts_tree
    agg.set_std(2.0)
    agg.add({"t": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="only when a new tree starts"):
        agg.set_std(3.0)
    agg.add({"t": np.zeros((2, 2))})
    agg.add({"t": np.zeros((2, 2))})
    assert agg.starts_tree
    agg.set_std(3.0)
    assert agg.std == 3.0
    no_restart = TreeAggregator({"t": (2, 2)}, 1.0, new_seed())
    no_restart.add({"t": np.zeros((2, 2))})
    with pytest.raises(ValueError):
        no_restart.set_std(2.0)


def test_wrong_tables_or_shapes_and_bad_arguments_are_refused():
    agg = TreeAggregator(SHAPES, 1.0, new_seed())
    with pytest.raises(ValueError, match="expected"):
        agg.add({"in": np.zeros((6, 3))})
    with pytest.raises(ValueError, match="shape"):
        agg.add({"in": np.zeros((6, 3)), "out": np.zeros((5, 3))})
    assert agg.steps == 0
    with pytest.raises(ValueError):
        TreeNoise(SHAPES, -1.0, seed=1)
    with pytest.raises(ValueError):
        TreeNoise(SHAPES, 1.0, seed=b"short")
    with pytest.raises(ValueError):
        TreeNoise(SHAPES, 1.0, seed=1, restart_every=-1)


# ---- distributed shares

def test_client_shares_of_always_present_clients_sum_to_a_tree_of_the_scaled_std():
    """m clients with std σ/√m: the |H| present in every step give prefix noise of variance
    popcount(t)·σ²·|H|/m, and their shares' increments telescope like the central tree's."""
    sigma, m, shape = 2.0, 5, (200, 150)
    shares = [ClientShare({"t": shape}, sigma / math.sqrt(m), new_seed()) for _ in range(m)]
    present = shares[:3]
    total = np.zeros(shape)
    for step in range(1, 8):
        for c in present:
            total += c.increment(step)["t"]
    expected_sd = sigma * math.sqrt(bin(7).count("1") * len(present) / m)
    assert total.std() == pytest.approx(expected_sd, rel=0.03)
    prefix = sum(TreeNoise({"t": shape}, sigma / math.sqrt(m), c._noise.seed).prefix(7)["t"] for c in present)
    np.testing.assert_allclose(total, prefix, rtol=1e-10, atol=1e-10)


def test_a_client_never_adds_the_same_steps_share_twice():
    share = ClientShare({"t": (3,)}, 1.0, new_seed())
    share.increment(2)
    for bad in (2, 1):
        with pytest.raises(ValueError, match="not after"):
            share.increment(bad)
    restored = ClientShare.from_state({"t": (3,)}, json.loads(json.dumps(share.state())))
    with pytest.raises(ValueError):
        restored.increment(2)
    np.testing.assert_array_equal(restored.increment(5)["t"], share.increment(5)["t"])
