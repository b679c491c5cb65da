"""Counter-based public randomness for DP-SGD: every sample's draws from (seed, step, the sample).

Why: DP-SGD's analysis needs each sample's clipped gradient to depend on nothing but that
sample (and public constants). Word2vec's subsampling, dynamic windows and negatives used
to come from streams consumed sample after sample, so adding one sample shifted the draws
of every sample after it: the neighbouring dataset changed many gradients, not one. Here a
draw is a hash of (seed, step, stream, sample key, index within the sample) — SplitMix64's
finaliser over a counter, vectorised over uint64 arrays, so a step costs a few passes over
its tokens and no Python loop.

The sample key is a digest of the sample's own tokens (word ids in order), not its position
in the shard: inserting a sample anywhere, or removing one, leaves every other sample's key
and draws unchanged, and a sample's gradient is then a deterministic function of the sample
and the public seed — exactly the setting the DP-SGD analysis assumes. Two identical samples
draw alike in a step; each is still clipped on its own.
"""
from __future__ import annotations

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32, _S40 = (np.uint64(s) for s in (30, 27, 31, 32, 40))

# one constant per kind of draw, so the streams of one sample never overlap
SUBSAMPLE, WINDOW, NEG_COLUMN, NEG_COIN = (np.uint64(c) for c in (0x5B5A, 0x3D1F, 0x7E11, 0xC015))


def mix(x: np.ndarray | np.uint64) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 whose outputs pass BigCrush over a counter."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64)
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def step_key(seed: int, step: int) -> np.uint64:
    """The key of one step of one round (the trainer's seed is already per client and round)."""
    with np.errstate(over="ignore"):
        return np.uint64(mix(mix(np.uint64(seed % 2**64)) + np.uint64(step) * _GAMMA + _GAMMA))


def sample_digests(words: np.ndarray, sample: np.ndarray, num_samples: int) -> np.ndarray:
    """A 64-bit digest of each sample's word sequence; `sample` [T] is non-decreasing (tokens grouped by sample).

    Σ_j mix(word_j · 2^32 + j) over the sample's positions j (order matters), then mixed with
    the length: a collision of two different samples has probability about 2^-64.
    """
    counts = np.bincount(sample, minlength=num_samples)
    pos = positions(sample, num_samples).astype(np.uint64)
    sums = np.zeros(num_samples, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = mix((words.astype(np.uint64) << _S32) + pos)
        nonempty = counts > 0                     # reduceat over consecutive segments; sums wrap mod 2^64
        sums[nonempty] = np.add.reduceat(h, (np.cumsum(counts) - counts)[nonempty]) if len(h) else 0
        return mix(sums ^ mix(counts.astype(np.uint64) + _GAMMA))


def sample_keys(key: np.uint64, digests: np.ndarray) -> np.ndarray:
    """Each sample's key for this step: its draws are mix(key_s ⊕ stream + (i + 1)·γ), i = index in the sample."""
    return mix(digests ^ key)


def draws(keys: np.ndarray, stream: np.uint64, owner: np.ndarray, index: np.ndarray) -> np.ndarray:
    """uint64 draws number `index` of stream `stream` of the samples `owner` (arrays of one length)."""
    with np.errstate(over="ignore"):
        return mix((keys[owner] ^ stream) + (index.astype(np.uint64) + np.uint64(1)) * _GAMMA)


def uniform(bits: np.ndarray) -> np.ndarray:
    """float32 uniforms in [0, 1) from the top 24 bits (all a float32 holds), as numpy's float32 draws."""
    return (bits >> _S40).astype(np.float32) * np.float32(2.0 ** -24)


def below(bits: np.ndarray, n: int) -> np.ndarray:
    """Integers in [0, n): the bias of a 64-bit modulus is below n / 2^64."""
    return (bits % np.uint64(n)).astype(np.int64)


def positions(sample: np.ndarray, num_samples: int) -> np.ndarray:
    """Each element's index within its sample, for elements grouped by sample (non-decreasing `sample`)."""
    counts = np.bincount(sample, minlength=num_samples)
    return np.arange(len(sample), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
