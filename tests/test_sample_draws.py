"""DP-SGD's public randomness is per sample (issue 17.6): adding a sample leaves every other sample's draws alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fedembed.privacy import record_params
from fedembed.privacy.record_dp import Samples
from fedembed.train import sample_draws as sd
from fedembed.train.word2vec import TrainStats, Word2VecParams
from fedembed.train.word2vec_dp import DPWord2VecTrainer
from fedembed.vocab import negative_distribution


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny tensors: thread hand-offs cost more than the work (conftest.one_torch_thread)."""


def _trainer(vocab: int, sg: bool, sample: float = 1e-2) -> DPWord2VecTrainer:
    counts = np.arange(vocab, 0, -1, dtype=np.int64) * 7          # some words frequent enough to be subsampled
    dp = record_params.DPSGDParams(sample_rate=0.5, clip=1.0, noise_multiplier=1.0, expected_batch=4, steps=1,
                                   delta=1e-5, accountant="rdp")
    params = Word2VecParams(sg=sg, window=3, negative=3, sample=sample, batch_size=8, neg_share=4)
    return DPWord2VecTrainer(torch.zeros(vocab, 4), torch.zeros(vocab, 4), counts, params, dp)


def _per_sample(trainer: DPWord2VecTrainer, ids, samples: Samples, chosen: np.ndarray, key) -> list[tuple]:
    """Everything random about each chosen sample's part of the step: its rows (as words) and negatives."""
    b = trainer._batch(ids, samples, chosen, key, TrainStats())
    out = []
    group = trainer.p.neg_share
    owner = b.token_owner[b.target]
    for s in range(len(chosen)):
        rows = (owner == s).nonzero().squeeze(1)
        hidden = b.hidden[rows]
        hid_words = torch.where(hidden >= 0, b.words[hidden.clamp(min=0)], -1)
        out.append((hid_words.tolist(), b.words[b.target[rows]].tolist(), b.mask[rows].tolist(),
                    b.negs[rows[::group] // group].tolist()))
    return out


def _corpus(rng: np.random.Generator, n: int, vocab: int) -> list[np.ndarray]:
    return [rng.integers(0, vocab, size=int(rng.integers(1, 15))).astype(np.int32) for _ in range(n)]


def _flatten(sents: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate(sents), np.cumsum([len(x) for x in sents])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 30), sg=st.booleans(), step=st.integers(0, 10_000),
       documents=st.booleans())
def test_adding_a_sample_anywhere_leaves_every_other_samples_draws_unchanged(seed, n, sg, step, documents):
    """Neighbouring datasets D and D + x (x inserted at a random place): each sample of D has the same
    subsampled tokens, windows (hence rows) and negatives in both, whichever samples the step chose."""
    rng = np.random.default_rng(seed)
    vocab = 40
    sents = _corpus(rng, n, vocab)
    new = _corpus(rng, 1, vocab)[0]
    at = int(rng.integers(0, n + 1))
    if documents:       # documents of 1-3 sentences; the added sample is a whole document
        doc = np.unique(rng.integers(0, max(1, n // 2), size=n), return_inverse=True)[1]   # not contiguous
        units = doc.tolist()
        ids, bounds = _flatten(sents)
        before = Samples(bounds, doc.astype(np.int32))
        where = int(doc.max()) + 1 if rng.random() < 0.5 else 0     # a new document id, first or last
        units2 = [u + (where == 0) for u in units]
        sents2, units2 = sents[:at] + [new] + sents[at:], units2[:at] + [where] + units2[at:]
        after = Samples(_flatten(sents2)[1], np.array(units2, dtype=np.int32))
        ids2 = _flatten(sents2)[0]
        old_to_new = np.arange(len(before)) + (where == 0)
        added = where
    else:
        ids, bounds = _flatten(sents)
        before = Samples(bounds)
        ids2, bounds2 = _flatten(sents[:at] + [new] + sents[at:])
        after = Samples(bounds2)
        old_to_new = np.arange(n) + (np.arange(n) >= at)
        added = at
    trainer = _trainer(vocab, sg)
    key = sd.step_key(seed, step)
    chosen = np.flatnonzero(rng.random(len(before)) < 0.7)
    if len(chosen) == 0:
        chosen = np.array([0])
    chosen2 = np.sort(np.append(old_to_new[chosen], added))            # the step chose the new sample too
    got = _per_sample(trainer, ids, before, chosen, key)
    got2 = _per_sample(trainer, ids2, after, chosen2, key)
    position = {s: i for i, s in enumerate(chosen2)}
    for i, s in enumerate(chosen):
        assert got[i] == got2[position[old_to_new[s]]]


def test_a_samples_draws_change_with_the_step_the_seed_and_its_own_tokens():
    """The draws are not constant: a test that could not fail would prove nothing."""
    rng = np.random.default_rng(1)
    sents = [rng.integers(0, 40, size=40).astype(np.int32) for _ in range(3)]
    sents[2] = sents[0].copy()
    sents[2][-1] = (sents[2][-1] + 1) % 40                               # one word differs
    ids, bounds = _flatten(sents)
    trainer = _trainer(40, True)
    chosen = np.arange(3)
    a = _per_sample(trainer, ids, Samples(bounds), chosen, sd.step_key(5, 0))
    assert a[0] != a[1] and a[0] != a[2]
    assert a != _per_sample(trainer, ids, Samples(bounds), chosen, sd.step_key(5, 1))
    assert a != _per_sample(trainer, ids, Samples(bounds), chosen, sd.step_key(6, 0))
    assert a == _per_sample(trainer, ids, Samples(bounds), chosen, sd.step_key(5, 0))


def test_per_sample_draws_have_word2vecs_distributions():
    """Keep rate = keep probability, windows uniform on 1..W, negatives ∝ unigram^0.75 (many samples, one step)."""
    vocab, n = 30, 4000
    rng = np.random.default_rng(2)
    sents = [rng.integers(0, vocab, size=10).astype(np.int32) for _ in range(n)]
    ids, bounds = _flatten(sents)
    trainer = _trainer(vocab, True, sample=5e-2)
    tokens, _, sample = Samples(bounds).gather(np.arange(n))
    keys = sd.sample_keys(sd.step_key(3, 7), sd.sample_digests(ids[tokens], sample, n))
    pos = sd.positions(sample, n)
    kept = sd.uniform(sd.draws(keys, sd.SUBSAMPLE, sample, pos)) < trainer.keep[ids[tokens]]
    for w in (0, 1, 29):
        sel = ids[tokens] == w
        p = float(trainer.keep[w])
        assert abs(kept[sel].mean() - p) < 4 * np.sqrt(p * (1 - p) / sel.sum()) + 1e-9
    reach = 1 + sd.below(sd.draws(keys, sd.WINDOW, sample, pos), 5)
    assert np.abs(np.bincount(reach, minlength=6)[1:] / len(reach) - 0.2).max() < 0.01
    owner = np.repeat(np.arange(n), 10)
    negs = trainer._sample_negatives(keys, owner, n).numpy().ravel()
    freq = np.bincount(negs, minlength=vocab) / len(negs)
    expected = negative_distribution(np.arange(vocab, 0, -1) * 7, 0.75)       # _trainer's counts
    assert np.abs(freq - expected).max() < 4 * np.sqrt(expected.max() / len(negs))


def test_digests_depend_on_order_and_length_only_through_the_samples_own_tokens():
    words = np.array([3, 4, 4, 3, 3, 4, 4, 3, 9], dtype=np.int64)
    sample = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4])
    d = sd.sample_digests(words, sample, 5)
    assert d[0] != d[1] and d[0] == d[2] and d[1] == d[3]              # order matters; equal content, equal digest
    assert sd.sample_digests(words[4:], sample[4:] - 2, 3).tolist() == d[2:].tolist()
    assert len(set(sd.sample_digests(np.arange(1000), np.arange(1000), 1000).tolist())) == 1000
