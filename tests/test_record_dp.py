"""Record-level DP-SGD: exact per-sample clipping against Opacus, noise, accounting, client wiring."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flwr.app import RecordDict
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.nn.functional import softplus

from fedembed import compose, models
from fedembed.run import federate
from fedembed.data.prepare import prepare
from fedembed.data.shards import ShardWriter, load_shard, load_units
from fedembed.errors import ConfigError
from fedembed.federation import client as client_mod, wire
from fedembed.federation.record_copies import ServerCopies
from fedembed.privacy import record_params, record_state
from fedembed.privacy.lazy_noise import LazyNoise
from fedembed.privacy.per_sample import RowSums, clip_factors, squared_norms
from fedembed.privacy.record_dp import Samples, concat_ranges
from fedembed.train.word2vec_dp import Batch, DPWord2VecTrainer, clipped_update, pad_to_groups, row_sums
from fedembed.train.word2vec import Word2VecParams, cbow_step, pack_contexts

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")   # Opacus: secure RNG off, backward hooks


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny tensors: thread hand-offs cost more than the work (conftest.one_torch_thread)."""


# ---- per-sample norms and clipping against Opacus ------------------------------------------------------

class SGNSModule(nn.Module):
    """SGNS as a plain nn.Module with two nn.Embedding tables: what Opacus can wrap.

    One call per table (the output table looks up the positive and the negatives together),
    as ghost clipping refuses a table used twice in a forward pass.
    """

    def __init__(self, w_in: torch.Tensor, w_out: torch.Tensor) -> None:
        super().__init__()
        self.inp, self.out = nn.Embedding(*w_in.shape), nn.Embedding(*w_out.shape)
        with torch.no_grad():
            self.inp.weight.copy_(w_in)
            self.out.weight.copy_(w_out)

    def forward(self, centers: torch.Tensor, out_ids: torch.Tensor) -> torch.Tensor:   # [S,P], [S,P,1+K]
        return (self.out(out_ids) * self.inp(centers).unsqueeze(2)).sum(-1)              # scores [S,P,1+K]


class SampleLoss(nn.Module):
    """A sample's loss is the sum of its pairs' SGNS losses; `reduction` as Opacus' ghost mode wants it."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask, self.reduction = mask, "sum"

    def forward(self, scores: torch.Tensor, _target=None) -> torch.Tensor:
        per = ((softplus(-scores[..., 0]) + softplus(scores[..., 1:]).sum(-1)) * self.mask).sum(1)
        return per if self.reduction == "none" else per.sum()


def _case(seed: int, v: int = 12, d: int = 4, k: int = 2, group: int = 2, s: int = 4):
    """Random tables and pairs of `s` samples, grouped and padded as the DP trainer does."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    w_in, w_out = torch.randn(v, d, generator=g) * 0.5, torch.randn(v, d, generator=g) * 0.5
    owner = np.repeat(np.arange(s), rng.integers(1, 7, size=s))
    centers, contexts = rng.integers(0, v, size=len(owner)), rng.integers(0, v, size=len(owner))
    centers[:3] = 5                     # the same (sample, row) more than once: sums must be taken
    src, real = pad_to_groups(owner, s, group)
    negs = torch.randint(0, v, (len(src) // group, k), generator=g)
    return (w_in, w_out, torch.from_numpy(centers[src]), torch.from_numpy(contexts[src]), negs,
            torch.from_numpy(owner[src]), torch.from_numpy(real.astype(np.float32)), s, group)


def _as_batch(centers, contexts, negs, owner, mask, s, group):
    """One row per sample, padded to the longest; every pair with its group's negatives."""
    pair_negs = negs.repeat_interleave(group, 0)
    p = int(torch.bincount(owner, minlength=s).max())
    cb = torch.zeros(s, p, dtype=torch.long)
    ob = torch.zeros(s, p, 1 + negs.shape[1], dtype=torch.long)
    mb = torch.zeros(s, p)
    for i in range(s):
        idx = (owner == i).nonzero().squeeze(1)
        cb[i, :len(idx)], ob[i, :len(idx), 0], ob[i, :len(idx), 1:] = centers[idx], contexts[idx], pair_negs[idx]
        mb[i, :len(idx)] = mask[idx]
    return cb, ob, mb


def _batch(hidden, target, owner, mask, negs, num_samples) -> Batch:
    """A Batch whose every row has tokens of its own (the trainer's pairs share their sentence's tokens)."""
    flat = hidden.reshape(-1)
    n, p = len(flat), len(target)
    per_row = n // p
    words = torch.cat([flat.clamp(min=0), target])
    token_owner = torch.cat([owner.repeat_interleave(per_row), owner])
    tokens = torch.where(flat >= 0, torch.arange(n), -1).view(hidden.shape)
    return Batch(words, token_owner, tokens, n + torch.arange(p), mask, negs, num_samples)


def _clipped_sum(w_in, w_out, batch: Batch, clip: float, chunk: int):
    """The trainer's step with lr = 1 on copies of the tables: ‖g_s‖ and Σ_s clip(g_s) per table."""
    a, b = w_in.clone(), w_out.clone()
    norms, _ = clipped_update(a, b, batch, row_sums(batch, *w_in.shape), clip, 1.0, chunk)
    return norms.float(), [a - w_in, b - w_out]


def _ours(case, clip, chunk):
    w_in, w_out, centers, contexts, negs, owner, mask, s, _ = case
    norms, sums = _clipped_sum(w_in, w_out, _batch(centers, contexts, owner, mask, negs, s), clip, chunk)
    return norms, [-x for x in sums]          # ours are descent directions


@pytest.mark.parametrize("seed,group,clip,chunk", [(0, 1, 0.7, 1024), (1, 2, 0.7, 2), (2, 4, 1.5, 4),
                                                   (3, 2, 100.0, 6)])
def test_norms_and_clipped_sum_match_opacus_hooks(seed, group, clip, chunk):
    """Small chunks split samples across forward passes: their slots must still sum them."""
    from opacus import GradSampleModule

    case = _case(seed, group=group)
    w_in, w_out, centers, contexts, negs, owner, mask, s, _ = case
    cb, ob, mb = _as_batch(*case[2:])
    model = GradSampleModule(SGNSModule(w_in, w_out), loss_reduction="sum")
    SampleLoss(mb)(model(cb, ob)).backward()
    per_sample = [p.grad_sample for p in model.parameters()]          # [S, V, D] each: fine for V = 12
    ref_norms = torch.sqrt(sum(t.flatten(1).square().sum(1) for t in per_sample))
    factors = (clip / (ref_norms + 1e-6)).clamp(max=1.0)
    ref_sum = [(t * factors.view(-1, 1, 1)).sum(0) for t in per_sample]
    norms, got = _ours(case, clip, chunk)
    torch.testing.assert_close(norms, ref_norms, rtol=1e-5, atol=1e-6)
    for a, b in zip(got, ref_sum):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert (ref_norms > clip).any() or clip == 100.0          # the clipping was exercised


@pytest.mark.parametrize("seed", [4, 5])
def test_norms_and_clipped_sum_match_opacus_ghost_clipping(seed):
    from opacus import PrivacyEngine

    clip = 0.8
    case = _case(seed)
    w_in, w_out, *_, s, _ = case
    cb, ob, mb = _as_batch(*case[2:])
    model = SGNSModule(w_in, w_out)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(s)), batch_size=s)
    ghost, optimizer, criterion, _ = PrivacyEngine().make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), data_loader=loader,
        criterion=SampleLoss(mb), noise_multiplier=0.0, max_grad_norm=clip, grad_sample_mode="ghost",
        loss_reduction="sum", poisson_sampling=False)
    optimizer.zero_grad()
    criterion(ghost(cb, ob)).backward()          # Opacus' two backward passes: norms, then the clipped sum
    norms, got = _ours(case, clip, 1024)
    torch.testing.assert_close(norms, ghost.per_sample_gradient_norms, rtol=1e-5, atol=1e-6)
    for a, p in zip(got, ghost.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("empty_padding", [False, True])
def test_cbow_per_sample_gradients_are_the_plain_step_on_each_sample_alone(empty_padding):
    """CBOW is not a true gradient (word2vec gives every context word the whole error), so the
    reference is the tested non-private kernel, run on one sample at a time. Padding windows
    contribute nothing whether they copy a real window or read no context (as batches have them)."""
    g = torch.Generator().manual_seed(7)
    v, d, k, group, s, clip = 15, 5, 2, 2, 3, 0.5
    w_in, w_out = torch.randn(v, d, generator=g), torch.randn(v, d, generator=g)
    owner = np.repeat(np.arange(s), [3, 4, 2])
    ctx = torch.randint(0, v, (len(owner), 4), generator=g)
    ctx[0, 2:] = -1
    ctx[4, 1:] = -1
    pos = torch.randint(0, v, (len(owner),), generator=g)
    src, real = pad_to_groups(owner, s, group)
    negs = torch.randint(0, v, (len(src) // group, k), generator=g)
    src_t, owner_t = torch.from_numpy(src), torch.from_numpy(owner[src])
    mask = torch.from_numpy(real.astype(np.float32))
    hidden = ctx[src_t].clone()
    if empty_padding:
        hidden[mask == 0] = -1
    assert (mask == 0).any()
    batch = _batch(hidden, pos[src_t], owner_t, mask, negs, s)
    norms, grads = _clipped_sum(w_in, w_out, batch, clip, chunk=4)
    pair_negs = negs.repeat_interleave(group, 0)
    ref = [torch.zeros_like(w_in), torch.zeros_like(w_out)]
    for i in range(s):
        rows = ((owner_t == i) & (mask > 0)).nonzero().squeeze(1)
        a, b = w_in.clone(), w_out.clone()
        cbow_step(a, b, pack_contexts(ctx[src_t][rows]), pos[src_t][rows], pair_negs[rows], 1.0)   # one row per negative draw
        delta = [a - w_in, b - w_out]
        norm = torch.sqrt(sum(x.square().sum() for x in delta))
        assert norms[i].item() == pytest.approx(norm.item(), rel=1e-5)
        for r, x in zip(ref, delta):
            r += x * min(1.0, clip / (norm.item() + 1e-6))
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 20), st.integers(1, 5), st.integers(1, 40),
       st.floats(1e-3, 10.0), st.floats(1e-3, 1e3), st.integers(0, 2**31))
def test_exact_norms_and_clipped_norms_at_most_clip(samples, vocab, dim, n, clip, scale, seed):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randint(0, samples, (n,), generator=g)
    row = torch.randint(0, vocab, (n,), generator=g)
    vec = torch.randn(n, dim, generator=g, dtype=torch.float64) * scale
    dense = torch.zeros(samples, vocab, dim, dtype=torch.float64)       # the [S, V, D] we never build
    dense.index_put_((sample, row), vec, accumulate=True)
    split = n // 2          # two sources for one table, as positives and negatives are, added in pieces
    sums = RowSums([(sample[:split], row[:split]), (sample[split:], row[split:])], vocab, dim, torch.float64)
    for lo in range(0, split, 3):
        sums.add(0, slice(lo, lo + 3), vec[lo:min(lo + 3, split)])
    sums.add(1, torch.arange(n - split), vec[split:])
    sq = squared_norms([sums], samples)
    torch.testing.assert_close(sq.sqrt(), dense.flatten(1).norm(dim=1), rtol=1e-9, atol=1e-9)
    sums.vec.mul_(clip_factors(sq, clip)[sums.sample].unsqueeze(1))
    assert (squared_norms([sums], samples).sqrt() <= clip * (1 + 1e-9)).all()


def test_no_batch_by_vocab_by_dim_tensor_is_ever_allocated():
    from opacus.accountants import RDPAccountant
    from torch.profiler import ProfilerActivity, profile

    v, d, batch = 50_000, 16, 40
    rng = np.random.default_rng(0)
    ids = rng.integers(0, v, size=200 * 20).astype(np.int32)
    bounds = np.arange(20, len(ids) + 1, 20)
    dp = record_params.DPSGDParams(sample_rate=batch / 200, clip=1.0, noise_multiplier=1.0,
                                   expected_batch=batch, steps=2, delta=1e-5, accountant="rdp")
    trainer = DPWord2VecTrainer(torch.zeros(v, d), torch.zeros(v, d), np.full(v, 10), Word2VecParams(sample=0), dp)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        trainer.train_dp(ids, Samples(bounds), 0.025, 0.025, 0, RDPAccountant())
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < largest <= v * d * 4             # one table's worth (the final noise draw): B·V·D·4 / 40


# ---- noise -----------------------------------------------------------------------------------------------

def test_lazy_noise_gives_every_coordinate_the_variance_of_every_step():
    table = torch.zeros(4000, 10)
    noise = LazyNoise([table], torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    stds = rng.uniform(0.5, 2.0, size=12)
    for s in stds:
        noise.settle(0, torch.from_numpy(np.sort(rng.choice(2000, 300, replace=False))))  # rows read by a step
        noise.settle(0, torch.arange(2000, 2100))                                         # read every step
        noise.step(float(s))
    noise.settle_all()
    expected = float(np.sqrt((stds ** 2).sum()))
    assert torch.all(noise.given[0] == noise.total) and noise.total == pytest.approx(expected ** 2)
    for rows in (slice(0, 2000), slice(2000, 2100), slice(2100, 4000)):   # sometimes, always, never read
        part = table[rows]
        assert part.std().item() == pytest.approx(expected, rel=0.06 if len(part) < 2000 else 0.03)
        assert abs(part.mean().item()) < 0.1 * expected
    assert (table != 0).all()


def _topic_corpus(n_sent=400, vocab=20, seed=0):
    """Two topics whose words co-occur only within their topic (as in test_train)."""
    rng = np.random.default_rng(seed)
    sents = [rng.integers(0, 10, size=12) + 10 * (s % 2) for s in range(n_sent)]
    ids = np.concatenate(sents).astype(np.int32)
    return ids, np.cumsum([len(s) for s in sents]), np.full(vocab, 1000, dtype=np.int64)


@pytest.mark.parametrize("eager", [False, True])
def test_dp_sgd_noise_std_is_sigma_times_clip_on_every_coordinate(eager):
    """Lazy noise (the default) and eager noise (all 2·V·D coordinates every step) alike."""
    from opacus.accountants import RDPAccountant

    ids, bounds, counts = _topic_corpus(vocab=2000)
    lr, sigma, clip, steps = 0.05, 1000.0, 0.01, 10
    w_in, w_out = torch.zeros(2000, 25), torch.zeros(2000, 25)
    dp = record_params.DPSGDParams(sample_rate=0.05, clip=clip, noise_multiplier=sigma, expected_batch=20,
                                   steps=steps, delta=1e-5, accountant="rdp")
    trainer = DPWord2VecTrainer(w_in, w_out, counts, Word2VecParams(window=3, negative=4, batch_size=64,
                                                                    neg_share=8), dp, eager_noise=eager)
    trainer.train_dp(ids, Samples(bounds), lr, lr, 0, RDPAccountant(), secret=np.random.default_rng(0))
    assert (trainer.noise.drawn == 2 * w_in.numel() * steps) == eager
    # N(0, (lr·σ·C)²) a step, against a signal lr·Σ clip(g_s) of at most lr·|batch|·C: negligible here
    expected = lr * sigma * clip * np.sqrt(steps)
    both = torch.cat([w_in, w_out])
    assert (both != 0).all()                             # rows no sample touched got noise too
    assert both.std().item() == pytest.approx(expected, rel=0.02)
    assert w_in[20:].std().item() == pytest.approx(expected, rel=0.02)   # never read by the data
    assert abs(both.mean().item()) < 0.02 * expected


# ---- training -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sg", [True, False])
def test_dp_sgd_with_moderate_noise_still_learns_the_topics(sg):
    from opacus.accountants import RDPAccountant

    ids, bounds, counts = _topic_corpus()
    torch.manual_seed(0)
    w_in, w_out = (torch.rand(20, 16) - 0.5) / 16, torch.zeros(20, 16)
    dp = record_params.DPSGDParams(sample_rate=0.1, clip=1.0, noise_multiplier=0.5, expected_batch=40, steps=60,
                                   delta=1e-5, accountant="rdp")
    trainer = DPWord2VecTrainer(w_in, w_out, counts, Word2VecParams(sg=sg, window=3, negative=4, sample=0,
                                                                    batch_size=64, neg_share=8), dp)
    acc = RDPAccountant()
    secret = np.random.default_rng(0)
    first = trainer.train_dp(ids, Samples(bounds), 0.05, 0.05, 0, acc, secret).loss
    later = trainer.train_dp(ids, Samples(bounds), 0.05, 0.01, 1, acc, secret).loss
    assert later < first and sum(s for *_, s in acc.history) == 120
    x = torch.nn.functional.normalize(w_in, dim=1)
    sim = x @ x.T
    assert (sim[:10, :10].sum() - 10) / 90 > sim[:10, 10:].mean() + 0.3


def test_samples_groups_sentences_into_documents_and_batches_keep_them_whole():
    bounds = np.array([2, 5, 6, 10])                     # sentences [0,2) [2,5) [5,6) [6,10)
    units = np.array([1, 0, 1, 2], dtype=np.int32)       # document 1 is not contiguous
    docs = Samples(bounds, units)
    assert len(docs) == 3 and len(Samples(bounds)) == 4
    tokens, sent, sample = docs.gather(np.array([1, 2]))
    assert tokens.tolist() == [0, 1, 5, 6, 7, 8, 9] and sample.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert sent.tolist() == [0, 0, 1, 2, 2, 2, 2]        # windows still stop at sentence ends
    assert concat_ranges(np.array([3, 0]), np.array([2, 0])).tolist() == [3, 4]
    src, real = pad_to_groups(np.array([0, 0, 0, 2]), 3, 2)
    assert src.tolist() == [0, 1, 2, 0, 3, 3] and real.tolist() == [1, 1, 1, 0, 1, 0]


def test_shards_keep_each_sentences_document(tmp_path):
    w = ShardWriter(tmp_path, 2)
    for i, unit in enumerate(["a", "b", "a", "c", "b"]):
        w.append(i % 2, np.arange(i + 1), unit)
    w.close()
    _, bounds = load_shard(tmp_path, 0)
    assert load_units(tmp_path, 0, len(bounds)).tolist() == [0, 0, 1]     # a, a, b
    with pytest.raises(ValueError, match="3 entries for 2"):
        load_units(tmp_path, 0, 2)


# ---- configuration and accounting --------------------------------------------------------------------

@pytest.mark.parametrize("record,msg", [
    ({"enabled": True}, "exactly one of noise_multiplier or target_epsilon"),
    ({"enabled": True, "noise_multiplier": 1.0, "target_epsilon": 2.0}, "exactly one"),
    ({"noise_multiplier": 1.0}, "needs privacy.record.enabled"),
    ({"enabled": True, "noise_multiplier": -1.0}, "noise_multiplier must be >= 0"),
    ({"enabled": True, "noise_multiplier": 1.0, "clip": 0.0}, "clip must be > 0"),
    ({"enabled": True, "noise_multiplier": 1.0, "delta": 1.0}, "delta must be in"),
    ({"enabled": True, "noise_multiplier": 1.0, "unit": "word"}, "unit"),
    ({"enabled": True, "noise_multiplier": 1.0, "accountant": "gdp"}, "accountant"),
    ({"enabled": True, "noise_multiplier": 1.0, "expected_batch": 0}, "expected_batch must be > 0"),
])
def test_invalid_record_dp_settings_are_refused(record, msg):
    with pytest.raises(ConfigError, match=msg):
        compose.load(overrides={f"privacy.record.{k}": v for k, v in record.items()})


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_noise_multiplier_from_target_epsilon_keeps_epsilon_at_most_the_target(accountant):
    cfg = compose.load(overrides={"privacy.record.enabled": True, "privacy.record.target_epsilon": 2.0,
                                     "privacy.record.delta": 1e-5, "privacy.record.expected_batch": 50,
                                     "privacy.record.accountant": accountant, "federation.rounds": 5})
    p = record_params.resolve(cfg, num_samples=1000)
    assert p.sample_rate == 0.05 and p.steps == 20 and p.expected_batch == 50
    acc = record_state.restore(accountant, None)
    for _ in range(p.steps * cfg.federation.rounds):     # a client sampled in every round
        acc.step(noise_multiplier=p.noise_multiplier, sample_rate=p.sample_rate)
    assert 1.9 <= acc.get_epsilon(delta=1e-5) <= 2.0
    with pytest.raises(ConfigError, match="below 1/n"):
        record_params.resolve(cfg, num_samples=100_000)


def test_record_epsilon_agrees_with_dp_accounting():
    """An independent implementation (Google's dp-accounting) of the same RDP analysis."""
    import dp_accounting
    from opacus.accountants import RDPAccountant

    sigma, q, steps, delta = 1.1, 0.02, 300, 1e-6
    acc = record_state.restore("rdp", {"mechanism": "rdp", "history": [[sigma, q, steps]]})
    ours = acc.get_epsilon(delta=delta)
    ref = dp_accounting.rdp.RdpAccountant(RDPAccountant.DEFAULT_ALPHAS)
    ref.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    assert ours == pytest.approx(ref.get_epsilon(delta), rel=0.02)


# ---- the client: accountant state across rounds -------------------------------------------------------

@pytest.fixture
def dp_run(tmp_path, write_scenario):
    """Three clients over the Lee corpus, record-level DP on; `round_` runs one client round."""
    cfg = compose.load(write_scenario(privacy={"record": {"enabled": True, "noise_multiplier": 1.0,
                                                             "expected_batch": 16, "delta": 1e-5}}))
    (tmp_path / "run").mkdir()
    prep = prepare(cfg, tmp_path / "run")
    tables = models.make(cfg).init_tables(len(prep.vocab), 0)

    def ins(rnd: int, server_state=None) -> wire.TrainInstruction:
        return wire.TrainInstruction(rnd, 0.025, 0.02, 0, cfg.to_dict(), str(prep.shard_dir), server_state)

    def round_(rnd: int, node_state: RecordDict | None, server_state=None):
        return client_mod.train_round(tables, prep.vocab.counts, ins(rnd, server_state), 0,
                                      node_state=node_state, pipeline=compose.client_stages)
    return SimpleNamespace(cfg=cfg, prep=prep, tables=tables, ins=ins, round=round_)


def test_client_epsilon_grows_across_rounds_only_when_its_state_is_restored(dp_run):
    node = RecordDict()
    kept = [dp_run.round(r, node).metrics["dp_record_epsilon"] for r in (1, 2, 3)]
    fresh = [dp_run.round(r, RecordDict()).metrics["dp_record_epsilon"] for r in (1, 2, 3)]
    assert kept[0] < kept[1] < kept[2]
    assert fresh[0] == fresh[1] == fresh[2] == kept[0]           # a new accountant each round restarts at zero
    state = wire.parse_record_dp(node)
    m = dp_run.round(4, RecordDict(), server_state=state).metrics  # resumed elsewhere: the server's copy
    assert m["dp_record_epsilon"] > kept[2]
    assert m["dp_record_steps"] == 4 * record_state.steps(state) / 3
    assert m["dp_record_noise_multiplier"] == 1.0 and 0 < m["dp_record_sample_rate"] < 1


def test_dp_reply_carries_no_data_dependent_numbers_and_weights_every_row(dp_run):
    u = dp_run.round(1, RecordDict())
    assert not {"loss", "examples", "words"} & set(u.metrics)
    for name, w in u.weights.items():
        assert (w == w[0]).all()                                   # the same weight on every row
        assert (u.tables[name] != 0).all()                         # and noise on every row
    again = dp_run.round(1, RecordDict())                          # same scenario seed, same round
    assert not np.array_equal(again.tables["in_vectors"], u.tables["in_vectors"])   # the seed can't replay the noise


def test_client_app_keeps_the_accountant_in_context_state_and_replies_with_it(dp_run):
    from flwr.app import DEFAULT_TTL, Context, Message, MessageType, Metadata

    from client import app as client_app

    context = Context(run_id=1, node_id=7, node_config={"partition-id": 0, "num-partitions": 3},
                      state=RecordDict(), run_config={})
    vocab = wire.arrays({"counts": dp_run.prep.vocab.counts})
    eps = []
    for rnd in (1, 2):
        content = wire.train_content(wire.arrays(dp_run.tables), vocab, dp_run.ins(rnd))
        meta = Metadata(run_id=1, message_id=f"m{rnd}", src_node_id=1, dst_node_id=7, reply_to_message_id="",
                        group_id=str(rnd), created_at=time.time(), ttl=DEFAULT_TTL, message_type=MessageType.TRAIN)
        reply = client_app.train(Message(content=content, metadata=meta), context)
        eps.append(reply.content.metric_records[wire.METRICS]["dp_record_epsilon"])
        assert wire.parse_record_dp(reply.content) == wire.parse_record_dp(context.state)
    assert eps[0] < eps[1]
    assert record_state.steps(wire.parse_record_dp(context.state)) > 0


def test_server_copy_survives_a_checkpoint_and_continues_a_resumed_clients_epsilon(dp_run):
    """A resumed run's clients start with an empty context.state: the server sends its copy."""
    import json

    node = RecordDict()
    eps = [dp_run.round(r, node).metrics["dp_record_epsilon"] for r in (1, 2)]
    server = ServerCopies()
    reply = wire.reply_content({}, {}, {}, wire.parse_record_dp(node))
    server.observe(0, reply)
    server.observe(0, wire.reply_content({}, {}, {}))        # a reply without state changes nothing
    extra: dict = {}
    server.save(extra)
    resumed = ServerCopies(json.loads(json.dumps(extra)))     # the checkpoint is JSON
    content = wire.train_content(wire.arrays(dp_run.tables), wire.arrays({"counts": dp_run.prep.vocab.counts}),
                                 dp_run.ins(3))
    assert wire.parse_record_dp(resumed.content_for(1, content)) is None   # another client: nothing to send
    tables, counts, ins = wire.parse_train(resumed.content_for(0, content))
    assert ins.record_dp == wire.parse_record_dp(node) and wire.parse_record_dp(content) is None
    m = client_mod.train_round(tables, counts, ins, 0, node_state=RecordDict(), pipeline=compose.client_stages).metrics
    assert m["dp_record_epsilon"] > eps[1]


@pytest.mark.parametrize("sg", [True, False])
def test_a_step_in_pieces_of_whole_samples_is_the_same_step(sg):
    """Large batches run in pieces (bounded memory), summed before the tables change: the same step.
    (σ = 0: with noise, the lazy draws would fall to rows in another order.)"""
    from opacus.accountants import RDPAccountant

    ids, bounds, counts = _topic_corpus()
    dp = record_params.DPSGDParams(sample_rate=0.2, clip=0.5, noise_multiplier=0.0, expected_batch=80, steps=5,
                                   delta=1e-5, accountant="rdp")
    params = Word2VecParams(sg=sg, window=3, negative=4, sample=0, batch_size=64, neg_share=8)
    tables = []
    for cap in (1 << 30, 100):
        w_in, w_out = (torch.arange(320.0).view(20, 16) % 7 - 3) / 50, torch.zeros(20, 16)
        trainer = DPWord2VecTrainer(w_in, w_out, counts, params, dp, max_step_rows=cap)
        trainer.train_dp(ids, Samples(bounds), 0.05, 0.05, 0, RDPAccountant(), np.random.default_rng(3))
        tables.append((w_in, w_out))
    assert trainer._sums is not None                          # the second run went in pieces
    for a, b in zip(*tables):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_batch_pieces_keep_samples_whole_and_rebase_their_tokens():
    words = torch.tensor([5, 6, 7, 8, 9])
    owner = torch.tensor([0, 0, 1, 1, 2])          # three samples: 2, 3 and 1 real rows, padded to groups of 2
    batch = Batch(words, owner, torch.tensor([0, 1, 2, 3, 3, 2, 4, 4]), torch.tensor([1, 0, 3, 2, 2, 3, 4, 4]),
                  torch.tensor([1.0, 1, 1, 1, 1, 0, 1, 0]), torch.tensor([[1], [2], [3], [4]]), 3)
    assert batch.pieces(8) == [batch]
    first, rest = batch.pieces(6)
    assert first.num_samples == 2 and rest.num_samples == 1
    assert first.words.tolist() == [5, 6, 7, 8] and first.negs.tolist() == [[1], [2], [3]]
    assert first.hidden.tolist() == batch.hidden[:6].tolist() and first.mask.tolist() == batch.mask[:6].tolist()
    assert rest.words.tolist() == [9] and rest.token_owner.tolist() == [0]
    assert rest.hidden.tolist() == [0, 0] and rest.target.tolist() == [0, 0] and rest.negs.tolist() == [[4]]
    assert [p.num_samples for p in batch.pieces(2)] == [1, 1, 1]     # a sample larger than the cap goes alone


def test_server_restores_record_level_accountants_after_resume(tmp_path, write_scenario):
    """Resume in a new server (fresh client state): ε keeps growing instead of restarting at 0."""
    from flwr.supercore.task_identity import TaskIdentity

    from fedembed import metrics as metrics_mod
    from test_aggregate import InProcessGrid  # tests/ is on sys.path (pytest rootdir conftest)

    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = 1, 1, 0
    try:
        rec = {"record": {"enabled": True, "noise_multiplier": 1.0, "expected_batch": 64, "delta": 1e-5}}
        straight = compose.load(write_scenario("a.toml", federation={"rounds": 3}, privacy=rec))
        federate(InProcessGrid(3), straight, tmp_path / "straight", progress=False)
        short = compose.load(write_scenario("b.toml", federation={"rounds": 2}, privacy=rec))
        federate(InProcessGrid(3), short, tmp_path / "resumed", progress=False)
        federate(InProcessGrid(3), straight, tmp_path / "resumed", resume=True, progress=False)  # new clients
        eps = [[r["privacy"]["units"]["record"]["epsilon"] for r in metrics_mod.read(tmp_path / d)]
               for d in ("straight", "resumed")]
    finally:
        TaskIdentity._run_id = TaskIdentity._task_id = TaskIdentity._node_id = None
    assert eps[1][2] > eps[1][1] > eps[1][0] > 0
    assert eps[1] == pytest.approx(eps[0], rel=1e-6)


# ---- a target ε stays the target when the run is extended ----------------------------------------------

_history = st.lists(st.tuples(st.floats(0.6, 5.0), st.floats(0.005, 0.3), st.integers(1, 200)), max_size=3)


@settings(max_examples=10, deadline=None)
@given(history=_history, q=st.floats(0.005, 0.3), steps=st.integers(1, 400), target=st.floats(1.0, 12.0))
def test_remaining_noise_multiplier_spends_exactly_what_is_left(history, q, steps, target):
    """Cross-checked against Google's dp-accounting, an independent implementation of the same RDP analysis."""
    import dp_accounting
    from opacus.accountants import RDPAccountant

    from fedembed.privacy.accountant import epsilon_after, remaining_noise_multiplier

    delta = 1e-6
    spent = epsilon_after(history, 1.0, q, 0, delta) if history else 0.0
    if spent >= target:
        with pytest.raises(ValueError, match="budget is spent"):
            remaining_noise_multiplier(history, q, steps, target, delta)
        return
    sigma = remaining_noise_multiplier(history, q, steps, target, delta)
    assert epsilon_after(history, sigma, q, steps, delta) <= target
    assert epsilon_after(history, sigma, q, steps, delta) >= target - 0.011        # and leaves little unspent
    ref = dp_accounting.rdp.RdpAccountant(RDPAccountant.DEFAULT_ALPHAS)
    for z, p, n in [*history, (sigma, q, steps)]:
        ref.compose(dp_accounting.PoissonSampledDpEvent(p, dp_accounting.GaussianDpEvent(z)), n)
    assert ref.get_epsilon(delta) <= target * 1.02


def _target_cfg(rounds: int, accountant: str = "rdp"):
    return compose.load(overrides={"privacy.record.enabled": True, "privacy.record.target_epsilon": 3.0,
                                      "privacy.record.delta": 1e-5, "privacy.record.expected_batch": 50,
                                      "privacy.record.accountant": accountant, "federation.rounds": rounds})


def _train_rounds(acc, params, rounds: int) -> None:
    for _ in range(params.steps * rounds):
        acc.step(noise_multiplier=params.noise_multiplier, sample_rate=params.sample_rate)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_extending_the_rounds_on_resume_rederives_sigma_and_keeps_the_target(accountant):
    first = record_params.resolve(_target_cfg(4, accountant), num_samples=1000)
    acc = record_state.restore(accountant, None)
    _train_rounds(acc, first, 2)
    state = record_state.capture(acc, first)
    same = record_params.resolve(_target_cfg(4, accountant), 1000, record_state.saved_noise_multiplier(state),
                                 record_state.history(state))
    assert same.noise_multiplier == first.noise_multiplier            # the plan still fits: no drift
    more = record_params.resolve(_target_cfg(8, accountant), 1000, record_state.saved_noise_multiplier(state),
                                 record_state.history(state))
    assert more.noise_multiplier > first.noise_multiplier             # rounds 3-8 share what rounds 1-2 left
    _train_rounds(acc, more, 6)
    assert 2.9 <= acc.get_epsilon(delta=1e-5) <= 3.0                  # the old σ would have overshot
    old = record_state.restore(accountant, state)
    _train_rounds(old, first, 6)
    assert old.get_epsilon(delta=1e-5) > 3.0


def test_a_spent_record_budget_refuses_to_train_and_names_the_keys():
    first = record_params.resolve(_target_cfg(4), num_samples=1000)
    acc = record_state.restore("rdp", None)
    _train_rounds(acc, first, 4)
    acc.step(noise_multiplier=0.3, sample_rate=0.5)                   # something else spent the rest
    state = record_state.capture(acc, first)
    with pytest.raises(ConfigError, match=r"privacy\.record\.target_epsilon = 3 leaves no room for "
                                          r"federation\.rounds = 6"):
        record_params.resolve(_target_cfg(6), 1000, record_state.saved_noise_multiplier(state),
                              record_state.history(state))


def test_client_extended_on_resume_reports_at_most_the_target(tmp_path, write_scenario):
    """Through the client's round: a state from a 2-round plan, then the run resumed with 4 rounds."""
    def cfg(rounds):
        return compose.load(write_scenario(federation={"rounds": rounds}, privacy={"record": {
            "enabled": True, "target_epsilon": 2.0, "expected_batch": 64, "delta": 1e-5}}))
    (tmp_path / "run").mkdir()
    prep = prepare(cfg(2), tmp_path / "run")
    tables = models.make(cfg(2)).init_tables(len(prep.vocab), 0)

    def round_(rnd, c, node):
        ins = wire.TrainInstruction(rnd, 0.025, 0.02, 0, c.to_dict(), str(prep.shard_dir), None)
        return client_mod.train_round(tables, prep.vocab.counts, ins, 0, node_state=node,
                                      pipeline=compose.client_stages).metrics
    node = RecordDict()
    planned = round_(1, cfg(2), node)                                  # σ planned for 2 rounds
    assert planned["dp_record_epsilon"] < 2.0
    extended = [round_(r, cfg(4), node) for r in (2, 3, 4)]           # resumed with federation.rounds = 4
    assert extended[0]["dp_record_noise_multiplier"] > planned["dp_record_noise_multiplier"]
    assert planned["dp_record_epsilon"] < extended[-1]["dp_record_epsilon"] <= 2.0
