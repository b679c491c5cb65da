"""The round's metric sums under the masks (fedembed/secagg/tally.py): exact through the quantizer
and the ring at any bit width the ring was sized for, whatever the clip bit and noise did."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fedembed.secagg.quantize import Layout, Quantizer, ring_bits
from fedembed.secagg.tally import CLIPPED, EXAMPLES, LOSS_SCALE, LOSS_SUM, VALUE_BITS, Tally, names_for

SHAPES = {"t": (3, 2)}


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 40), n=st.integers(1, 40), data=st.data())
def test_counters_sum_exactly_through_the_quantizer_and_the_ring(bits, n, data):
    ring = ring_bits(bits, n)
    tally = Tally((EXAMPLES, CLIPPED), bits)
    layout = Layout(SHAPES, 1 + tally.size)                      # the clip bit, then the tally
    q = Quantizer(layout, bits, 4.0, 8.0, ring, 1.0, tally.size)
    counts = data.draw(st.lists(st.tuples(st.integers(0, 2 ** 40), st.integers(0, 10 ** 6)), min_size=n, max_size=n))
    total = np.zeros(layout.size, dtype=q.dtype)
    rng = np.random.default_rng(0)
    for examples, clipped in counts:
        x = layout.flatten({"t": rng.normal(0, 9, SHAPES["t"])}, {"t": rng.normal(0, 9, 3)}, np.zeros(layout.extra))
        x[layout.weight_end] = 0.5
        q.clip(x)
        x[layout.size - tally.size:] = tally.encode({EXAMPLES: examples, CLIPPED: clipped}, rng)
        total += q.encode(x, None, rng)
    _, _, extra = q.decode_all(total)
    got = tally.decode(extra[1:])
    assert got[EXAMPLES] == sum(e for e, _ in counts) and got[CLIPPED] == sum(c for _, c in counts)
    assert extra[0] == pytest.approx(0.5 * n, abs=n * 1.0 / (2 ** (bits - 1) - 1) + 1e-9)


@settings(max_examples=30, deadline=None)
@given(losses=st.lists(st.tuples(st.floats(0, 50), st.integers(0, 10 ** 6)), min_size=1, max_size=20))
def test_the_loss_sum_is_the_fixed_point_sum_of_loss_times_examples(losses):
    tally = Tally((LOSS_SUM,), 24)
    rng = np.random.default_rng(1)
    limbs = sum(tally.encode({"loss": loss, EXAMPLES: ex}, rng) for loss, ex in losses)
    got = tally.decode(np.asarray(limbs, dtype=np.float64))[LOSS_SUM]
    assert got == pytest.approx(sum(loss * ex for loss, ex in losses), abs=len(losses) / LOSS_SCALE)


def test_values_outside_the_counter_range_are_clamped_not_wrapped():
    tally = Tally((EXAMPLES,), 8)
    assert tally.decode(tally.encode({EXAMPLES: -5.0}))[EXAMPLES] == 0
    assert tally.decode(tally.encode({EXAMPLES: 2.0 ** 60}))[EXAMPLES] == 2 ** VALUE_BITS - 1
    assert tally.decode(tally.encode({EXAMPLES: float("nan")}))[EXAMPLES] == 0


def test_what_a_round_sums_follows_its_privacy():
    assert names_for(user_level=True, record_level=False) == ()
    assert names_for(user_level=True, record_level=True) == ()
    assert names_for(user_level=False, record_level=True) == (CLIPPED,)
    assert names_for(user_level=False, record_level=False) == (LOSS_SUM, EXAMPLES, CLIPPED)
    with pytest.raises(ValueError, match="distinct"):
        Tally(("loss",), 8)
