"""Cross-device cohorts (fedembed/train/cohort.py): many FedSGD users in one vectorised step give the
same aggregate as training them one by one — in isolation, and through whole federations (one
Flower node per user against a pool of nodes summing their cohorts)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fedembed import checkpoint, compose, metrics
from fedembed.errors import ConfigError
from fedembed.run import federate
from fedembed.train.cohort import cohort_step
from fedembed.train.word2vec import Word2VecParams
from inprocess_grid import InProcessGrid

V, D = 60, 8
PARAMS = Word2VecParams(sg=True, window=3, negative=3, sample=0.0, ns_exponent=0.75, batch_size=64, neg_share=4)


def _tables(seed=0):
    rng = np.random.default_rng(seed)
    return {"in_vectors": rng.normal(0, 0.3, (V, D)).astype(np.float32),
            "out_vectors": rng.normal(0, 0.3, (V, D)).astype(np.float32)}


def _users(rng, n):
    users = []
    for _ in range(n):
        lengths = rng.integers(2, 12, rng.integers(1, 4))
        users.append((rng.integers(0, V, lengths.sum()).astype(np.int32), np.cumsum(lengths)))
    return users


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), clip=st.sampled_from([0.05, 0.5, float("inf")]),
       cbow=st.booleans())
def test_a_cohort_sums_what_its_users_give_one_by_one(seed, n, clip, cbow):
    rng = np.random.default_rng(seed)
    params = Word2VecParams(**{**PARAMS.__dict__, "sg": not cbow})
    tables, users, counts = _tables(seed % 7), _users(rng, n), rng.integers(1, 50, V).astype(np.float64)
    together = cohort_step(tables, users, counts, params, 0.05, clip, seed)
    alone = [cohort_step(tables, [u], counts, params, 0.05, clip, seed) for u in users]
    for k in tables:
        np.testing.assert_allclose(together.sums[k], sum(a.sums[k] for a in alone), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(together.presence[k], sum(a.presence[k] for a in alone))
    for a in alone:             # each user's update is clipped to C
        total = np.sqrt(sum(float(np.square(a.sums[k].astype(np.float64)).sum()) for k in tables))
        assert total <= clip * (1 + 1e-5)


def test_a_users_update_is_its_gradient_step_by_autograd():
    """An independent computation of one user's FedSGD step: autograd of the SGNS loss over the
    same pairs and negatives, against the kernel's sum."""
    from fedembed.privacy.record_dp import Samples
    from fedembed.privacy.record_params import DPSGDParams
    from fedembed.train import sample_draws as sd
    from fedembed.train.cohort import stack
    from fedembed.train.word2vec import TrainStats
    from fedembed.train.word2vec_dp import DPWord2VecTrainer

    rng = np.random.default_rng(3)
    tables, users, counts = _tables(1), _users(rng, 1), np.ones(V)
    got = cohort_step(tables, users, counts, PARAMS, 0.1, float("inf"), 11)
    w_in = torch.tensor(tables["in_vectors"], requires_grad=True)
    w_out = torch.tensor(tables["out_vectors"], requires_grad=True)
    ids, bounds, owner = stack(users)
    trainer = DPWord2VecTrainer(w_in.detach().clone(), w_out.detach().clone(), counts, PARAMS,
                                DPSGDParams(1.0, 1.0, 0.0, 1.0, 1, 1e-6, "rdp"))
    b = trainer._batch(ids, Samples(bounds, owner), np.arange(1), sd.step_key(11, 0), TrainStats())
    group = len(b.target) // len(b.negs)
    h, pos = w_in[b.words[b.hidden]], w_out[b.words[b.target]]
    neg = w_out[b.negs.repeat_interleave(group, dim=0)]
    loss = -(torch.nn.functional.logsigmoid((h * pos).sum(1))
             + torch.nn.functional.logsigmoid(-(neg @ h.unsqueeze(2)).squeeze(2)).sum(1)) * b.mask
    loss.sum().backward()
    np.testing.assert_allclose(got.sums["in_vectors"], -0.1 * w_in.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.sums["out_vectors"], -0.1 * w_out.grad.numpy(), rtol=1e-4, atol=1e-6)


def _fedsgd(write_scenario, name, nodes, **privacy):
    sections = {"partition": {"name": "iid", "num_clients": 8},
                "federation": {"rounds": 2, "row_weight": "presence"},
                "train": {"mode": "fedsgd", "lr": 0.05, "min_lr": 0.05},
                "simulation": {"nodes": nodes}, "secagg": {"enabled": False}}
    if privacy:
        sections["privacy"] = {"user_level": True, "denominator": "public", "delta": 1e-6, **privacy}
    return compose.load(write_scenario(name, **sections))


@pytest.mark.parametrize("privacy", [{}, {"noise_multiplier": 0.0, "clip": 0.05},
                                     {"noise_multiplier": 0.0, "clip": 0.05, "release_rows": 20}])
def test_a_pool_of_vectorised_cohorts_gives_the_one_by_one_federations_tables(tmp_path, write_scenario, privacy):
    """The issue's check: 8 users, one Flower node each (train_round per user, the ClipUpdate stage
    clips) against 2 pool nodes summing their users in one step (clipped in the kernel). With
    release_rows the two zero the rows past K differently (the ReleaseRows stage on the whole delta;
    the kernel on each gradient piece before the norm) and must agree."""
    one = _fedsgd(write_scenario, "one.toml", 0, **privacy)
    federate(InProcessGrid(8), one, tmp_path / "one", progress=False)
    pooled = _fedsgd(write_scenario, "pool.toml", 2, **privacy)
    grid = InProcessGrid(2)
    federate(grid, pooled, tmp_path / "pool", progress=False)
    a, b = checkpoint.load(tmp_path / "one").tables, checkpoint.load(tmp_path / "pool").tables
    for k in a:
        assert np.abs(a[k] - checkpoint.load(tmp_path / "one").tables[k]).max() == 0
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-6)
    rows = metrics.read(tmp_path / "pool")
    assert [r["clients_ok"] for r in rows] == [8, 8] and grid.calls["train"] == 4     # 2 messages a round


def test_vectorised_cohorts_refuse_what_they_cannot_sum(write_scenario):
    with pytest.raises(ConfigError, match="denominator"):
        _fedsgd(write_scenario, "bad.toml", 2, noise_multiplier=1.0, denominator="noisy")
    with pytest.raises(ConfigError, match="record-level"):
        compose.load(None, {"train.mode": "fedsgd", "privacy.record.enabled": True,
                            "privacy.record.noise_multiplier": 1.0})
