"""Privacy attacks: vocabulary inference, membership inference, canary exposure, and their data stage."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fedembed import compose
from fedembed.run import federate
from fedembed.aggregate import make as make_rule
from fedembed.attacks.privacy.canary import exposure, summarize
from fedembed.attacks.privacy.membership import evaluate_scores
from fedembed.attacks.privacy.observe import uniform_ring
from fedembed.observe import Observation
from fedembed.attacks.privacy.plant import Planted, plant
from fedembed.attacks.privacy.roc import auc
from fedembed.attacks.privacy.scoring import log_sigmoid, sentence_scores
from fedembed.attacks.privacy.vocab_inference import _magnitude, attack
from fedembed.data.prepare import prepare
from fedembed.data.shards import load_shard, load_units
from fedembed.data.tokenize import tokenize
from fedembed.errors import ConfigError
from fedembed.train.word2vec import Word2VecParams, Word2VecTrainer
from fedembed.updates import delta, weight_rows
from fedembed.vocab import Vocabulary
from inprocess_grid import InProcessGrid

PARAMS = Word2VecParams(window=3, negative=5, batch_size=256, neg_share=16)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Small tensors everywhere here (conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def lee(small_corpus):
    """The Lee corpus as (vocabulary, one id array per line)."""
    vocab = Vocabulary.load(small_corpus["words"])
    lines = small_corpus["corpus"].read_text(encoding="utf-8").splitlines()
    sents = [vocab.encode(tokenize(line)) for line in lines]
    return vocab, [s for s in sents if len(s) >= 2]


def _flat(sentences):
    return np.concatenate(sentences).astype(np.int32), np.cumsum([len(s) for s in sentences]).astype(np.int64)


def _init(v: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {"in_vectors": ((rng.random((v, dim), dtype=np.float32) - 0.5) / dim),
            "out_vectors": np.zeros((v, dim), dtype=np.float32)}


def _train(vocab, sentences, epochs: int, dim: int = 16, lr: float = 0.1, seed: int = 0):
    import torch

    tables = _init(len(vocab), dim, seed)
    w_in, w_out = torch.tensor(tables["in_vectors"]), torch.tensor(tables["out_vectors"])
    trainer = Word2VecTrainer(w_in, w_out, vocab.counts, PARAMS)
    trainer.train(*_flat(sentences), epochs, lr, lr / 10, seed)
    counts = {"in_vectors": trainer.in_counts.numpy(), "out_vectors": trainer.out_counts.numpy()}
    return {"in_vectors": w_in.numpy(), "out_vectors": w_out.numpy()}, counts, tables


# ----------------------------------------------------------------------------- vocabulary inference

def test_vocab_inference_is_exact_on_plaintext_and_chance_on_a_masked_update(lee):
    vocab, sents = lee
    client = sents[:40]
    local, counts, start = _train(vocab, client, epochs=1)
    rule = make_rule(compose.load(None))
    update = weight_rows(delta(local, start, rule.client_weights(counts, 1)))
    used = np.bincount(np.concatenate(client), minlength=len(vocab)) > 0
    plain = attack(Observation(update.tables, update.weights), used)
    assert plain["precision"] == 1.0 and plain["recall"] >= 0.97 and plain["auc"] >= 0.97
    cfg = compose.load(None, {"partition.num_clients": 10})
    for view in (compose.mask_like_secagg(Observation(update.tables, update.weights), cfg, 0),  # fedembed.secagg's stages
                 uniform_ring(Observation(update.tables, update.weights), np.random.default_rng(1))):  # the ideal
        hidden = attack(view, used)
        assert hidden["recall"] == 1.0                       # every row looks touched ...
        assert hidden["precision"] == pytest.approx(hidden["base_rate"], abs=1e-12)   # ... so precision is chance
        assert abs(hidden["auc"] - 0.5) < 0.06               # and the row magnitudes carry nothing


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), v=st.integers(5, 300), frac=st.floats(0.01, 0.9))
def test_vocab_inference_properties(seed, v, frac):
    """Plaintext: the touched rows are recovered exactly. Masked: what the attack sees does not depend
    on the update at all (two different updates give the same view from the same mask randomness)."""
    rng = np.random.default_rng(seed)
    used = rng.random(v) < frac
    used[0] = True
    table = np.where(used[:, None], rng.normal(size=(v, 4)), 0.0).astype(np.float32)
    obs = Observation({"in_vectors": table}, {"in_vectors": used.astype(np.float32)})
    out = attack(obs, used)
    assert out["precision"] == 1.0 and out["recall"] == 1.0
    other = Observation({"in_vectors": rng.normal(size=(v, 4)).astype(np.float32)},
                        {"in_vectors": np.ones(v, np.float32)})
    a = uniform_ring(obs, np.random.default_rng(seed))
    b = uniform_ring(other, np.random.default_rng(seed))
    np.testing.assert_equal(attack(a, used), attack(b, used))   # (nan == nan when every row is used)


@given(x=st.integers(-(2**31) + 1, 2**31 - 1))
def test_ring_elements_read_as_signed(x):
    assert _magnitude(np.array([x % 2**32], dtype=np.uint64), 32)[0] == abs(x)


# ----------------------------------------------------------------------------- membership inference

def test_membership_auc_is_high_on_an_overfit_model_and_one_half_untrained(lee):
    vocab, sents = lee
    members, non_members = sents[:60], sents[60:120]
    tables, _, start = _train(vocab, members, epochs=5)
    m, n = sentence_scores(tables, members, 3), sentence_scores(tables, non_members, 3)
    fit = evaluate_scores(m, n, 0.0, 0.95)
    assert fit["auc"] > 0.8 and fit["tpr_at_fpr_0.1"] > 0.4
    m0, n0 = sentence_scores(start, members, 3), sentence_scores(start, non_members, 3)
    np.testing.assert_allclose(np.concatenate([m0, n0]), log_sigmoid(0.0))   # output table at zero: log σ(0)
    cold = evaluate_scores(m0, n0, 0.0, 0.95)                               # (up to rounding in the means)
    assert abs(cold["auc"] - 0.5) < 0.1 and cold["epsilon_lb"] < 0.5


def test_membership_auc_is_near_one_half_under_strong_record_level_dp(lee):
    import torch
    from opacus.accountants import RDPAccountant

    from fedembed.privacy.record_dp import Samples
    from fedembed.train.word2vec_dp import DPWord2VecTrainer
    from fedembed.privacy.record_params import DPSGDParams

    vocab, sents = lee
    members, non_members = sents[:60], sents[60:120]
    start = _init(len(vocab), 16)
    w_in, w_out = torch.tensor(start["in_vectors"]), torch.tensor(start["out_vectors"])
    ids, bounds = _flat(members)
    dp = DPSGDParams(sample_rate=0.25, clip=0.1, noise_multiplier=20.0, expected_batch=15.0, steps=20,
                     delta=1e-4, accountant="rdp")
    trainer = DPWord2VecTrainer(w_in, w_out, vocab.counts, PARAMS, dp)
    trainer.train_dp(ids, Samples(bounds), 0.05, 0.005, 0, RDPAccountant(), np.random.default_rng(3))
    tables = {"in_vectors": w_in.numpy(), "out_vectors": w_out.numpy()}
    out = evaluate_scores(sentence_scores(tables, members, 3), sentence_scores(tables, non_members, 3), 1e-4, 0.95)
    assert abs(out["auc"] - 0.5) < 0.12 and out["epsilon_lb"] < 1.0
    # DP-SGD noises every row, so the plaintext update no longer shows which words were used
    used = np.bincount(ids, minlength=len(vocab)) > 0
    update = {k: tables[k] - start[k] for k in tables}
    vocab_attack = attack(Observation(update, {}), used)
    assert vocab_attack["precision"] == pytest.approx(vocab_attack["base_rate"]) and vocab_attack["recall"] == 1.0


def test_sentence_score_is_the_mean_pair_log_likelihood():
    rng = np.random.default_rng(0)
    t = {"in_vectors": rng.normal(size=(6, 3)), "out_vectors": rng.normal(size=(6, 3))}
    s = np.array([1, 4, 2])
    pairs = [(1, 4), (4, 1), (4, 2), (2, 4), (1, 2), (2, 1)]       # window 2: every pair in a 3-word sentence
    want = np.mean([log_sigmoid(t["in_vectors"][a] @ t["out_vectors"][b]) for a, b in pairs])
    got = sentence_scores(t, [s, np.array([5])], window=2)
    assert got[0] == pytest.approx(want) and np.isnan(got[1])


# ----------------------------------------------------------------------------- canaries

def test_exposure_ranks_against_the_references():
    ref = np.arange(1023, dtype=float)
    assert exposure(np.array([5000.0]), ref)[0] == pytest.approx(10.0)     # best of 1024: log2 1024 − log2 1
    assert exposure(np.array([-1.0]), ref)[0] == pytest.approx(0.0)       # worst
    assert auc(np.array([2.0]), np.array([1.0, 3.0])) == 0.5


@settings(max_examples=50, deadline=None, derandomize=True)
@given(ref=st.lists(st.integers(-5, 5), min_size=1, max_size=60), scores=st.lists(st.integers(-6, 6), min_size=2))
def test_exposure_is_bounded_and_monotone(ref, scores):
    """0 ≤ exposure ≤ log2(|R|) and a higher score never has less exposure (ties count half)."""
    ref, scores = np.array(ref, float), np.sort(np.array(scores, float))
    e = exposure(scores, ref)
    assert (e >= -1e-12).all() and (e <= np.log2(len(ref) + 1) + 1e-12).all()
    assert (np.diff(e) >= -1e-12).all()


def _canary_exposure(vocab, sents, repetitions: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(vocab), size=(10 + 10 + 300, 6))
    inserted, controls, refs = draws[:10], draws[10:20], draws[20:]
    data = list(sents[:60]) + [c.astype(np.int32) for c in inserted for _ in range(repetitions)]
    order = rng.permutation(len(data))
    tables, _, _ = _train(vocab, [data[i] for i in order], epochs=5)
    score = lambda rows: sentence_scores(tables, list(rows), 3)  # noqa: E731
    return summarize(score(inserted), score(controls), score(refs), 0.0, 0.95)


def test_canary_exposure_is_high_when_inserted_many_times_and_chance_when_never(lee):
    vocab, sents = lee
    many, never = _canary_exposure(vocab, sents, 20), _canary_exposure(vocab, sents, 0)
    assert many["exposure_mean"] > 6.0 and many["exposure_mean"] > never["exposure_mean"] + 3.0
    assert never["exposure_mean"] < 3.0 and many["control_exposure_mean"] < 3.0
    assert many["epsilon_lb"] > never["epsilon_lb"] == 0.0


# ----------------------------------------------------------------------------- data stage, config, end to end

def test_plant_holds_out_and_inserts_what_it_records(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(privacy_attacks={"canary": True, "membership": True, "target_client": 1,
                                                          "canaries": 3, "canary_repetitions": 4,
                                                          "candidates": 50, "non_members": 20}))
    (tmp_path / "run").mkdir()
    prep = prepare(cfg, tmp_path / "run", plant=plant)
    planted = Planted.load(tmp_path / "run")
    assert planted.inserted.shape == (3, 6) and planted.references.shape == (50, 6)
    ids, bounds = load_shard(prep.shard_dir, 1)
    starts = np.concatenate(([0], bounds[:-1]))
    sentences = [tuple(ids[s:e]) for s, e in zip(starts, bounds)]
    for i in planted.canary_sentences:
        assert sentences[i] in {tuple(c) for c in planted.inserted}
    assert sorted(sentences[i] for i in planted.canary_sentences) == sorted(tuple(c) for c in planted.inserted
                                                                           for _ in range(4))
    assert len(planted.heldout()) == 20
    plain_cfg = compose.load(write_scenario("plain.toml"))
    (tmp_path / "plain").mkdir()
    plain = prepare(plain_cfg, tmp_path / "plain")
    def sentences_of(prep_):
        out = Counter()
        for c in prep_.manifest.active:
            ids, bounds = load_shard(prep_.shard_dir, c)
            assert prep_.manifest.tokens[c] == len(ids) and prep_.manifest.sentences[c] == len(bounds)
            units = load_units(prep_.shard_dir, c, len(bounds))
            assert len(units) == len(bounds) and set(units.tolist()) == set(range(prep_.manifest.units[c]))
            starts = np.concatenate(([0], bounds[:-1]))
            out.update(tuple(ids[s:e].tolist()) for s, e in zip(starts, bounds))
        return out
    # nothing lost, nothing added: the shards + the held-out sentences − the canary copies = the plain shards
    trained = sentences_of(prep)
    assert not set(trained) & {tuple(h.tolist()) for h in planted.heldout()}   # no twin left in training
    planted_side = trained + Counter(tuple(h.tolist()) for h in planted.heldout())
    planted_side.subtract(Counter(tuple(c.tolist()) for c in planted.inserted for _ in range(4)))
    assert +planted_side == sentences_of(plain)
    again = prepare(cfg, tmp_path / "run", plant=plant)          # reused, not planted twice
    assert again.manifest.tokens == prep.manifest.tokens
    assert (tmp_path / "run" / "privacy_attacks" / "canaries.tsv").read_text().count("planted\t") == 3


@pytest.mark.parametrize("key, value, msg", [
    ("target_client", 3, "privacy_attacks.target_client"),
    ("canary_length", 1, "privacy_attacks.canary_length"),
    ("confidence", 1.5, "privacy_attacks.confidence"),
    ("candidates", 0, "privacy_attacks.candidates"),
    ("canary", 1, "privacy_attacks.canary"),
    ("unknown", 1, "privacy_attacks.unknown"),
])
def test_config_refuses_bad_attack_settings(write_scenario, key, value, msg):
    with pytest.raises(ConfigError, match=msg):
        compose.load(write_scenario(privacy_attacks={key: value}))


@pytest.mark.slow
def test_a_run_reports_every_attack_next_to_the_ledger(tmp_path, write_scenario):
    from fedembed.federation import wire

    cfg = compose.load(write_scenario(privacy_attacks={"vocab_inference": True, "membership": True,
                                                          "canary": True, "candidates": 100,
                                                          "members": 30, "non_members": 30}))
    grid = InProcessGrid(3)
    report = federate(grid, cfg, tmp_path / "run", progress=False)
    pa = report["privacy_attacks"]
    # the offline replay is exactly the reply the server received from the target in round 1
    replay = compose.replay_update(cfg, prepare(cfg, tmp_path / "run"), 0)
    round1 = [c for mtype, c in grid.seen if mtype == "train"][:3]     # round 1's replies, partitions 0..2 in order
    tables, weights, _ = wire.parse_reply(round1[0])
    for k in tables:
        np.testing.assert_array_equal(replay.tables[k], tables[k])
        np.testing.assert_array_equal(replay.weights[k], weights[k])
    assert pa["vocab_inference"]["plain"]["precision"] == 1.0 and pa["vocab_inference"]["plain"]["recall"] > 0.95
    assert pa["vocab_inference"]["masked"]["precision"] == pytest.approx(pa["vocab_inference"]["masked"]["base_rate"])
    assert 0.0 <= pa["membership"]["auc"] <= 1.0
    assert pa["canary"]["exposure_mean"] > pa["canary"]["control_exposure_mean"]
    ee = pa["empirical_epsilon"]
    assert ee["ledger_epsilon"] is None and ee["within_ledger"] is True     # not private: ε = ∞
    details = json.loads((tmp_path / "run" / "report.json").read_text())["privacy_attacks_details"]
    assert details["vocab_inference"]["mask"] == "fedembed.secagg" and details["membership"]["members"] == 30
    assert details["vocab_inference"]["source"]["plain"] == "observed"     # the observer hook saw round 1
    assert details["canary"]["repetitions"] == 10 and details["empirical_epsilon"]["games"]["canary"]["group_size"] == 1


def test_empirical_summary_compares_only_games_of_one_unit():
    from fedembed.attacks.privacy.evaluate import empirical_summary

    figures = {"canary": {"epsilon_lb": 3.0}, "membership": {"epsilon_lb": 0.5}}
    details = {"canary": {"repetitions": 10}}
    user, _ = empirical_summary(figures, details, {"epsilon": 2.0, "delta": 1e-6, "unit": "user"}, 0.95)
    assert user == {"epsilon_lb": 3.0, "ledger_epsilon": 2.0, "within_ledger": False}
    record, games = empirical_summary(figures, details, {"epsilon": 2.0, "delta": 1e-6, "unit": "record"}, 0.95)
    assert record["epsilon_lb"] == 0.5 and record["within_ledger"] is True   # 10 copies = a group of 10 records
    assert games["games"]["canary"]["group_size"] == 10
    off, _ = empirical_summary(figures, details, {"epsilon": None, "delta": None, "unit": None}, 0.95)
    assert off["within_ledger"] is True                                      # not private: ε = ∞
