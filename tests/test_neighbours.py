"""quality.neighbour_overlap (fedembed/eval/neighbours.py) against a brute-force computation."""
from __future__ import annotations

import numpy as np
import pytest
from gensim.models import KeyedVectors

from fedembed.eval.neighbours import neighbour_overlap, top_k_neighbours


def _kv(words: list[str], vectors: np.ndarray) -> KeyedVectors:
    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(words, vectors.astype(np.float32))
    return kv


def _brute_force(words, vectors, ref_words, ref_vectors, counts, top, k) -> float:
    """Straight from the definition: full cosine matrices over the shared words, sorted rows."""
    ref = dict(zip(ref_words, ref_vectors))
    shared = [w for w in words if w in ref]
    a = np.array([vectors[words.index(w)] for w in shared], dtype=np.float64)
    b = np.array([ref[w] for w in shared], dtype=np.float64)
    c = np.array([counts[words.index(w)] for w in shared])

    def neighbours(x: np.ndarray, i: int) -> set[str]:
        sims = [(float(x[i] @ x[j] / np.linalg.norm(x[i]) / np.linalg.norm(x[j])), shared[j])
                for j in range(len(shared)) if j != i]
        return {w for _, w in sorted(sims, reverse=True)[:k]}

    order = sorted(range(len(shared)), key=lambda i: (-c[i], i))[:top]
    return float(np.mean([len(neighbours(a, i) & neighbours(b, i)) / k for i in order]))


@pytest.mark.parametrize("block_bytes", [64 << 20, 4 * 60 * 3])           # one block; three queries a block
def test_matches_brute_force_on_a_small_random_case(block_bytes):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    vectors = rng.normal(size=(60, 8))
    # the reference: related but not equal, in another row order, missing two words, with one extra
    ref_words = [w for w in words if w not in ("w3", "w40")] + ["extra"]
    base = {w: v for w, v in zip(words, vectors)}
    ref_vectors = np.array([base[w] + 0.8 * rng.normal(size=8) if w in base else rng.normal(size=8)
                            for w in ref_words])
    perm = rng.permutation(len(ref_words))
    ref_words, ref_vectors = [ref_words[i] for i in perm], ref_vectors[perm]
    counts = rng.integers(1, 1000, size=60)
    got = neighbour_overlap(words, vectors, _kv(ref_words, ref_vectors), counts, top=25, k=5,
                            block_bytes=block_bytes)
    want = _brute_force(words, vectors, ref_words, ref_vectors, counts, top=25, k=5)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0.0 < got < 1.0                                                # neither trivial end


def test_identical_vectors_score_one():
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(300)]
    vectors = rng.normal(size=(300, 16))
    counts = np.arange(300, 0, -1)
    assert neighbour_overlap(words, vectors, _kv(words, vectors), counts, top=100, k=10) == 1.0
    # scale does not matter (cosine), nor the reference's row order
    rev = words[::-1]
    assert neighbour_overlap(words, 3.0 * vectors, _kv(rev, vectors[::-1]), counts, top=100, k=10) == 1.0


def test_random_against_structured_is_near_chance_and_noisy_copy_is_high():
    rng = np.random.default_rng(2)
    n, k = 400, 10
    words = [f"w{i}" for i in range(n)]
    centres = rng.normal(size=(20, 32))
    structured = centres[rng.integers(20, size=n)] + 0.3 * rng.normal(size=(n, 32))   # 20 clusters
    counts = rng.integers(1, 10_000, size=n)
    ref = _kv(words, structured)
    chance = k / (n - 1)
    rand = neighbour_overlap(words, rng.normal(size=(n, 32)), ref, counts, top=n, k=k)
    assert abs(rand - chance) < 0.02
    close = neighbour_overlap(words, structured + 0.05 * rng.normal(size=(n, 32)), ref, counts, top=n, k=k)
    assert close > 0.5


def test_only_the_most_frequent_words_are_asked():
    """Two halves: the frequent half has the reference's vectors, the rare half random ones."""
    rng = np.random.default_rng(3)
    n = 200
    words = [f"w{i}" for i in range(n)]
    ref_vectors = rng.normal(size=(n, 16))
    vectors = ref_vectors.copy()
    rare = np.arange(n) % 2 == 1                                            # odd rows are rare
    vectors[rare] = rng.normal(size=(rare.sum(), 16))
    counts = np.where(rare, 1, 100)
    frequent_only = neighbour_overlap(words, vectors, _kv(words, ref_vectors), counts, top=n // 2, k=5)
    everyone = neighbour_overlap(words, vectors, _kv(words, ref_vectors), counts, top=n, k=5)
    assert everyone < frequent_only


def test_top_k_never_holds_the_query_and_handles_zero_rows():
    unit = np.zeros((5, 3), dtype=np.float32)                              # all zero: every cosine is 0
    nb = top_k_neighbours(unit, np.arange(5), k=4, block_bytes=8)
    for q, row in enumerate(nb):
        assert q not in row and len(set(row.tolist())) == 4


@pytest.mark.parametrize("kwargs, match", [
    ({"counts": np.ones(3)}, "one row per word"),
    ({"k": 0}, "must be >= 1"),
    ({"k": 10}, "only 5 words are shared"),
])
def test_bad_input_is_one_clear_line(kwargs, match):
    words = [f"w{i}" for i in range(5)]
    args = {"words": words, "vectors": np.eye(5), "reference_kv": _kv(words, np.eye(5)),
            "counts": np.ones(5), "top": 5, "k": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match) as err:
        neighbour_overlap(**args)
    assert "\n" not in str(err.value)
