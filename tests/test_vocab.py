"""The public vocabulary: construction, word lists, persistence, subsampling and negative sampling."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy import stats

from fedembed import vocab as V
from fedembed.errors import ConfigError, CorpusError
from fedembed.train.word2vec import Word2VecParams, Word2VecTrainer


# --------------------------------------------------------------------------- from_counts

def test_from_counts_order_min_count_max_size():
    counts = Counter({"b": 3, "a": 3, "c": 5, "d": 1, "e": 2})
    v = V.from_counts(counts)
    assert v.words == ["c", "a", "b", "e", "d"]          # by count, ties by word
    assert v.counts.tolist() == [5, 3, 3, 2, 1]
    assert v.counts.dtype == np.int64
    assert V.from_counts(counts, min_count=3).words == ["c", "a", "b"]
    assert V.from_counts(counts, max_size=2).words == ["c", "a"]
    assert V.from_counts(counts, min_count=2, max_size=10).words == ["c", "a", "b", "e"]
    assert v.index == {"c": 0, "a": 1, "b": 2, "e": 3, "d": 4}


def test_from_counts_is_independent_of_insertion_order():
    items = [("w%d" % i, (i * 7) % 5 + 1) for i in range(50)]
    a = V.from_counts(Counter(dict(items)))
    b = V.from_counts(Counter(dict(reversed(items))))
    assert a.words == b.words and a.fingerprint() == b.fingerprint()


def test_from_counts_bad_arguments():
    with pytest.raises(ConfigError, match="min_count"):
        V.from_counts(Counter({"a": 1}), min_count=0)
    with pytest.raises(ConfigError, match="max_size"):
        V.from_counts(Counter({"a": 1}), max_size=-1)
    with pytest.raises(CorpusError, match="min_count=3"):
        V.from_counts(Counter({"a": 1, "b": 2}), min_count=3)


def test_encode_drops_oov_and_duplicates_refused():
    v = V.from_counts(Counter({"x": 3, "y": 2, "z": 1}))
    ids = v.encode(["y", "unknown", "x", "z", "y"])
    assert ids.dtype == np.int32 and ids.tolist() == [1, 0, 2, 1]
    assert v.encode([]).tolist() == []
    with pytest.raises(CorpusError, match="duplicate"):
        V.Vocabulary(["a", "a"], [1, 2])
    with pytest.raises(ValueError):
        V.Vocabulary(["a", "b"], [1])


# --------------------------------------------------------------------------- word lists

def test_word_list_with_counts(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("# a comment\nHello 10\n\nworld\t5\nHELLO 3\nnew-york 4\n1999 50\nCafé 2\n", encoding="utf-8")
    words, counts = V.read_word_list(p)
    assert words == ["Hello", "world", "HELLO", "new-york", "1999", "Café"]
    assert counts == [10, 5, 3, 4, 50, 2]
    v = V.from_word_list(p)
    # tokenized like the corpus: case folded and merged; multi-token and digit entries dropped
    assert v.words == ["hello", "world", "café"] and v.counts.tolist() == [13, 5, 2]
    assert V.from_word_list(p, min_count=5).words == ["hello", "world"]


def test_word_list_without_counts_uses_zipf(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("the\nof\nand\nto\nzebra\n")
    words, counts = V.read_word_list(p)
    n = 5
    assert counts == [10 * n // (r + 1) for r in range(n)] == [50, 25, 16, 12, 10]
    v = V.from_word_list(p, min_count=5)
    assert v.words == ["the", "of", "and", "to", "zebra"]  # rank order kept, all kept with the default min_count
    assert np.all(np.diff(v.counts) <= 0)


@pytest.mark.parametrize("content,line,match", [
    ("a 1\nb 2\nc 3 extra\n", 3, "expected 'word' or 'word count'"),
    ("a 1\nb two\n", 2, "is not an integer"),
    ("a 1\n\nb 0\n", 3, "must be positive"),
    ("a 1\nb -4\n", 2, "must be positive"),
])
def test_malformed_word_list_names_file_and_line(tmp_path, content, line, match):
    p = tmp_path / "bad.txt"
    p.write_text(content)
    with pytest.raises(CorpusError, match=match) as info:
        V.read_word_list(p)
    assert f"{p}:{line}:" in str(info.value)
    with pytest.raises(CorpusError, match=f"{p}:{line}:"):
        V.from_word_list(p)


def test_word_list_invalid_utf8_names_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"alpha 3\nbeta 2\ncaf\xe9 1\n")
    with pytest.raises(CorpusError, match=rf"{p}:3: not valid UTF-8"):
        V.read_word_list(p)


def test_word_list_other_errors(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        V.read_word_list(tmp_path / "missing.txt")
    p = tmp_path / "empty.txt"
    p.write_text("# only a comment\n\n")
    with pytest.raises(CorpusError, match=f"{p} has no words"):
        V.read_word_list(p)
    p.write_text("a 3\nb\n")
    with pytest.raises(CorpusError, match=f"{p}: either every line has a count or none does"):
        V.read_word_list(p)
    p.write_text("1999\n2000\n")  # words, but none the tokenizer keeps
    with pytest.raises(CorpusError, match="vocabulary is empty"):
        V.from_word_list(p)


# --------------------------------------------------------------------------- persistence

def test_save_load_roundtrip_and_fingerprint(tmp_path):
    v = V.from_counts(Counter({"über": 9, "naïve": 4, "cat": 4, "日本": 1, "don't": 2}))
    p = tmp_path / "vocab.tsv"
    v.save(p)
    assert not (tmp_path / "vocab.tsv.tmp").exists()
    w = V.Vocabulary.load(p)
    assert w.words == v.words and w.counts.tolist() == v.counts.tolist()
    assert w.fingerprint() == v.fingerprint() and len(v.fingerprint()) == 16
    # the fingerprint sees counts and order
    assert V.Vocabulary(v.words, v.counts + 1).fingerprint() != v.fingerprint()
    assert V.Vocabulary(v.words[::-1], v.counts[::-1]).fingerprint() != v.fingerprint()


# --------------------------------------------------------------------------- subsampling

def test_keep_probabilities_match_gensim():
    from gensim.models import Word2Vec

    rng = np.random.default_rng(0)
    counts = np.sort(rng.zipf(1.3, size=300).clip(1, 10**6))[::-1].astype(np.int64)
    words = [f"w{i}" for i in range(len(counts))]
    for sample in (1e-3, 1e-4, 1e-2):
        model = Word2Vec(vector_size=4, min_count=1, sample=sample, workers=1)
        model.build_vocab_from_freq(dict(zip(words, counts.tolist())))
        gensim_keep = np.array([model.wv.get_vecattr(w, "sample_int") for w in words], dtype=np.float64) / 2**32
        ours = V.keep_probabilities(counts, sample)
        assert ours.dtype == np.float32 and ours.shape == counts.shape
        np.testing.assert_allclose(ours, gensim_keep, rtol=1e-6, atol=1e-6)
        assert (ours < 1).any() and (ours == 1).any()  # the test exercises both branches


def test_keep_probabilities_formula_and_no_sampling():
    counts = np.array([1000, 100, 10, 1])
    t = 1e-2 * counts.sum()
    expected = np.minimum((np.sqrt(counts / t) + 1) * t / counts, 1.0)
    np.testing.assert_allclose(V.keep_probabilities(counts, 1e-2), expected, rtol=1e-6)
    assert V.keep_probabilities(counts, 0.0).tolist() == [1.0] * 4


# --------------------------------------------------------------------------- negative sampling

def test_negative_distribution():
    counts = np.array([100, 10, 1, 0])
    p = V.negative_distribution(counts, 0.75)
    w = np.array([100, 10, 1, 1]) ** 0.75  # zero counts treated as one
    np.testing.assert_allclose(p, w / w.sum())
    np.testing.assert_allclose(V.negative_distribution(counts, 0.0), np.full(4, 0.25))


def test_alias_sampling_reproduces_unigram_075():
    """Draw through the trainer's own `_negatives` and compare with counts^0.75."""
    rng = np.random.default_rng(1)
    counts = np.sort(rng.zipf(1.5, size=40).clip(1, 5000))[::-1].astype(np.int64)
    params = Word2VecParams(negative=5, neg_share=32, batch_size=1024)
    trainer = Word2VecTrainer(torch.zeros(len(counts), 2), torch.zeros(len(counts), 2), counts, params)
    gen = torch.Generator().manual_seed(123)
    draws = trainer._negatives(32 * 200_000, gen)
    assert draws.shape == (200_000, 5)
    observed = np.bincount(draws.reshape(-1).numpy(), minlength=len(counts))
    target = counts.astype(np.float64) ** 0.75
    target /= target.sum()
    n = observed.sum()
    tv = 0.5 * np.abs(observed / n - target).sum()
    assert tv < 0.005, tv
    chi2, pvalue = stats.chisquare(observed, target * n)
    assert pvalue > 1e-4, (chi2, pvalue)
    # a plain-unigram draw would be clearly rejected: the test has power
    unigram = counts / counts.sum()
    assert 0.5 * np.abs(observed / n - unigram).sum() > 0.05


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=300),
       st.sampled_from([0.0, 0.5, 0.75, 1.0]))
def test_alias_table_encodes_the_exact_distribution(counts, exponent):
    counts = np.array(counts, dtype=np.int64)
    prob, alias = V.alias_table(counts, exponent)
    n = len(counts)
    assert prob.shape == alias.shape == (n,)
    assert prob.dtype == np.float32 and alias.dtype == np.int64
    assert np.all((prob >= 0) & (prob <= 1)) and np.all((alias >= 0) & (alias < n))
    p = V.negative_distribution(counts, exponent)
    prob64 = prob.astype(np.float64)
    implied = prob64 / n + np.bincount(alias, weights=(1.0 - prob64) / n, minlength=n)
    # (alias[j] == j with prob[j] == 1 contributes nothing extra)
    np.testing.assert_allclose(implied, p, rtol=1e-5, atol=1e-7)


def test_alias_tables_are_cached_per_counts_and_exponent_and_handed_out_as_copies():
    counts = np.array([50, 20, 5, 1, 0, 9], dtype=np.int64)
    first = V.alias_table(counts, 0.75)
    first[0][:] = -1                                  # a caller scribbling on its copy
    again = V.alias_table(counts.copy(), 0.75)
    fresh = V._build_alias_table(counts, 0.75)
    np.testing.assert_array_equal(again[0], fresh[0])
    np.testing.assert_array_equal(again[1], fresh[1])
    other = V.alias_table(counts[::-1].copy(), 0.75)  # other counts, other table
    assert not np.array_equal(other[1], again[1]) or not np.array_equal(other[0], again[0])
    assert not np.array_equal(V.alias_table(counts, 0.0)[0], again[0])
    for i in range(10):                               # bounded: old entries go
        V.alias_table(counts + i + 1, 0.75)
    assert len(V._ALIAS_CACHE) <= V._ALIAS_CACHE_SIZE
