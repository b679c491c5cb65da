"""The batched word2vec kernel: windows, subsampling, and the hand-written SGD step."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fedembed.train.windows import cbow_windows, sentence_ids, skipgram_pairs, subsample
from fedembed.train.word2vec import (Word2VecParams, Word2VecTrainer, cbow_mean, cbow_step, pack_contexts,
                                     sgns_step)


def _reference_pairs(ids, sent, reach):
    """The per-token loop word2vec.c runs, written plainly."""
    pairs = set()
    n = len(ids)
    for i in range(n):
        for j in range(max(0, i - reach[i]), min(n, i + reach[i] + 1)):
            if j != i and sent[j] == sent[i]:
                pairs.add((i, j))
    return pairs


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=6), st.integers(1, 5), st.integers(0, 2**31))
def test_skipgram_pairs_match_the_word2vec_loop(lengths, window, seed):
    bounds = np.cumsum(lengths)
    n = int(bounds[-1])
    ids = np.arange(n, dtype=np.int32)  # ids are positions, so pairs identify positions
    sent = sentence_ids(bounds)
    rng = np.random.default_rng(seed)
    centers, contexts = skipgram_pairs(ids, sent, window, rng)
    reach = np.random.default_rng(seed).integers(1, window + 1, size=n)
    got = list(zip(centers.tolist(), contexts.tolist()))
    assert len(got) == len(set(got))
    assert set(got) == _reference_pairs(ids, sent, reach)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=1, max_size=5), st.integers(1, 4), st.integers(0, 2**31))
def test_cbow_windows_hold_the_same_contexts(lengths, window, seed):
    bounds = np.cumsum(lengths)
    n = int(bounds[-1])
    ids = np.arange(n, dtype=np.int32)
    sent = sentence_ids(bounds)
    centers, ctx = cbow_windows(ids, sent, window, np.random.default_rng(seed))
    reach = np.random.default_rng(seed).integers(1, window + 1, size=n)
    expected = _reference_pairs(ids, sent, reach)
    got = {(int(c), int(x)) for c, row in zip(centers, ctx) for x in row if x >= 0}
    assert got == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(-1, 30), min_size=4, max_size=4), min_size=1, max_size=12), st.data())
def test_packed_contexts_hold_each_rows_contexts_in_order(rows, data):
    ctx = torch.tensor(rows)
    lo = data.draw(st.integers(0, len(rows) - 1))
    hi = data.draw(st.integers(lo + 1, len(rows)))
    part = pack_contexts(ctx).rows(lo, hi)
    flat, offsets = part.flat.tolist(), part.offsets.tolist()
    assert offsets[0] == 0 and len(offsets) == hi - lo + 1
    assert [flat[offsets[i]:offsets[i + 1]] for i in range(hi - lo)] == [[x for x in r if x >= 0] for r in rows[lo:hi]]
    # the mean over the packed rows is the mean over the padded block's real slots; 0 for a row with none
    w = torch.randn(31, 3, generator=torch.Generator().manual_seed(len(rows)))
    mask = (ctx[lo:hi] >= 0).float().unsqueeze(2)
    padded_mean = (w[ctx[lo:hi].clamp(min=0)] * mask).sum(1) / mask.sum(1).clamp(min=1)
    torch.testing.assert_close(cbow_mean(w, part), padded_mean)


def test_sentence_ids_and_subsampling_keep_rate():
    assert sentence_ids(np.array([2, 5, 6])).tolist() == [0, 0, 1, 1, 1, 2]
    rng = np.random.default_rng(0)
    ids = np.repeat(np.array([0, 1], dtype=np.int32), 50_000)
    keep = np.array([0.25, 1.0], dtype=np.float32)
    kept, sent = subsample(ids, np.zeros_like(ids, dtype=np.int64), keep, rng)
    frac0 = (kept == 0).sum() / 50_000
    assert abs(frac0 - 0.25) < 0.01 and (kept == 1).sum() == 50_000 and len(sent) == len(kept)


def _autograd_sgns(w_in, w_out, centers, pos, negs, lr, share):
    """Reference: the summed SGNS loss written naively, differentiated by autograd."""
    a = w_in.clone().requires_grad_(True)
    b = w_out.clone().requires_grad_(True)
    h = a[centers]
    neg_rows = negs.repeat_interleave(share, dim=0)  # each row's own K negatives
    loss = -torch.nn.functional.logsigmoid((h * b[pos]).sum(1)).sum()
    loss = loss - torch.nn.functional.logsigmoid(-(h.unsqueeze(1) * b[neg_rows]).sum(2)).sum()
    loss.backward()
    return a.detach() - lr * a.grad, b.detach() - lr * b.grad, loss.item()


@pytest.mark.parametrize("share", [1, 4])
def test_sgns_step_is_the_autograd_sgd_step(share):
    g = torch.Generator().manual_seed(0)
    v, d, b, k = 30, 8, 16, 3
    w_in, w_out = torch.randn(v, d, generator=g), torch.randn(v, d, generator=g)
    centers = torch.randint(0, v, (b,), generator=g)
    pos = torch.randint(0, v, (b,), generator=g)
    negs = torch.randint(0, v, (b // share, k), generator=g)
    ref_in, ref_out, ref_loss = _autograd_sgns(w_in, w_out, centers, pos, negs, 0.05, share)
    loss = sgns_step(w_in, w_out, centers, pos, negs, 0.05)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    torch.testing.assert_close(w_in, ref_in, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_out, ref_out, rtol=1e-5, atol=1e-6)


def test_cbow_step_matches_word2vec_update():
    """Output rows: the autograd step; context rows: each gets the full error of the mean (word2vec.c)."""
    g = torch.Generator().manual_seed(1)
    v, d, b, k = 20, 6, 8, 2
    w_in, w_out = torch.randn(v, d, generator=g), torch.randn(v, d, generator=g)
    ctx = torch.randint(0, v, (b, 4), generator=g)
    ctx[0, 2:] = -1
    pos = torch.randint(0, v, (b,), generator=g)
    negs = torch.randint(0, v, (b // 2, k), generator=g)
    a = w_in.clone().requires_grad_(True)
    bo = w_out.clone().requires_grad_(True)
    mask = (ctx >= 0).float()
    h_leaf = ((a[ctx.clamp(min=0)] * mask.unsqueeze(2)).sum(1) / mask.sum(1, keepdim=True))
    h_leaf.retain_grad()
    neg_rows = negs.repeat_interleave(2, dim=0)
    loss = -torch.nn.functional.logsigmoid((h_leaf * bo[pos]).sum(1)).sum() \
        - torch.nn.functional.logsigmoid(-(h_leaf.unsqueeze(1) * bo[neg_rows]).sum(2)).sum()
    loss.backward()
    expected_in = w_in.clone()
    for i in range(b):
        for c in ctx[i][ctx[i] >= 0].tolist():
            expected_in[c] -= 0.1 * h_leaf.grad[i]
    got = cbow_step(w_in, w_out, pack_contexts(ctx), pos, negs, 0.1)
    assert got == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(w_out, bo.detach() - 0.1 * bo.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_in, expected_in, rtol=1e-5, atol=1e-6)


def _toy_corpus(n_sent=400, seed=0):
    """Two topics whose words co-occur only within their topic: training must separate them."""
    rng = np.random.default_rng(seed)
    sents = [rng.integers(0, 10, size=12) + 10 * (s % 2) for s in range(n_sent)]
    ids = np.concatenate(sents).astype(np.int32)
    return ids, np.cumsum([len(s) for s in sents]), np.full(20, 1000, dtype=np.int64)


@pytest.mark.parametrize("sg", [True, False])
def test_training_lowers_loss_learns_topics_and_counts_rows(sg):
    ids, bounds, counts = _toy_corpus()
    torch.manual_seed(0)
    w_in = (torch.rand(20, 16) - 0.5) / 16
    w_out = torch.zeros(20, 16)
    trainer = Word2VecTrainer(w_in, w_out, counts, Word2VecParams(sg=sg, window=3, negative=4, sample=0,
                                                                  batch_size=64, neg_share=8))
    first = trainer.train(ids, bounds, 1, 0.05, 0.05, seed=0).loss
    later = trainer.train(ids, bounds, 5, 0.05, 0.001, seed=1).loss
    assert later < first
    x = torch.nn.functional.normalize(w_in, dim=1)
    sim = x @ x.T
    same = (sim[:10, :10].sum() - 10) / 90
    cross = sim[:10, 10:].mean()
    assert same > cross + 0.3
    assert trainer.in_counts.sum() > 0 and (trainer.in_counts > 0).all()
    assert trainer.out_counts.sum() > trainer.in_counts.sum()  # positives plus negatives


def test_training_is_reproducible_for_a_seed():
    ids, bounds, counts = _toy_corpus()
    outs = []
    for _ in range(2):
        w_in = torch.full((20, 8), 0.01)
        w_out = torch.zeros(20, 8)
        Word2VecTrainer(w_in, w_out, counts, Word2VecParams(batch_size=64, neg_share=8)).train(ids, bounds, 1, 0.05,
                                                                                               0.01, seed=7)
        outs.append(w_in)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
