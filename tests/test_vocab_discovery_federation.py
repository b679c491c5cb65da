"""vocab.mode = "discovered" in a run: discovery rounds over the real ClientApp, then training, one ledger."""
from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np
import pytest

from fedembed import checkpoint, compose, metrics as metrics_mod
from fedembed.data.tokenize import tokenize
from fedembed.discovery import accounting, rounds, wire as dwire
from fedembed.privacy.accountant import Accountant
from fedembed.privacy.params import sample_rate
from fedembed.run import federate
from fedembed.vocab import Vocabulary
from inprocess_grid import InProcessGrid

CLIENTS = 30


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Small tables: thread hand-offs cost more than the work (conftest.one_torch_thread)."""


def _scenario(write_scenario, secure: bool, epsilon: float = 20.0, **privacy):
    return compose.load(write_scenario(
        vocab={"mode": "discovered", "discovery": {"epsilon": epsilon}},
        partition={"name": "iid", "num_clients": CLIENTS},
        privacy={"user_level": True, "delta": 1e-3, **(privacy or {"noise_multiplier": 0.8})},
        federation={"rounds": 1, "row_weight": "presence"}, secagg={"enabled": secure}))


def _holders(run_dir) -> Counter:
    """How many clients hold each word: read from the simulated clients' own text (the test's truth)."""
    from fedembed.discovery.local_words import client_words, directory

    return Counter(w for p in range(CLIENTS) for w in client_words(directory(run_dir), p))


def _state(run_dir) -> dict:
    return json.loads(rounds.state_path(run_dir).read_text(encoding="utf-8"))["state"]


@pytest.mark.parametrize("secure", [False, True])
def test_discovery_then_training_in_one_run_with_one_ledger(tmp_path, write_scenario, secure):
    cfg = _scenario(write_scenario, secure)
    grid = InProcessGrid(CLIENTS)
    report = federate(grid, cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    vocab = Vocabulary.load(run / "vocab.tsv")
    state = _state(run)
    assert state["done"] and len(vocab) == len(state["scores"]) >= 20
    holders = _holders(run)
    assert min(holders[w] for w in vocab.words) >= 2                    # no word of a single client
    # the votes choose: what is found is held by far more clients than a word of the clients' text.
    # (Not "the", "of" and "and" by name: a client's vote is 1/√m on each of its m candidates, so even
    # a word all 30 hold gets ~30/√m ≈ 1, near this ε's threshold; the noise, from secret randomness,
    # decides which of them pass in a given run.)
    found = np.mean([holders[w] for w in vocab.words])
    assert found >= 3 * np.mean(list(holders.values())), (found, np.mean(list(holders.values())))
    # the ledger: the discovery's rounds (round 0), then training's, composed by one accountant
    saved = checkpoint.load(run)
    assert saved.extra[accounting.MARK]["rounds"] == len(state["rounds"]) == 8
    ledger = saved.extra["privacy"]
    assert [e["round"] for e in ledger["entries"]] == [0, 1]
    expected = Accountant(cfg.privacy.accountant)
    for r in state["rounds"]:
        expected.step(r["noise_multiplier"], r["sample_rate"])
    discovery_only = expected.epsilon(1e-3)
    # training's round as charged: z, or under SecAgg+ the noise its sum actually carries
    charged = ledger["entries"][1]["units"]["user"]["params"].get("effective_noise_multiplier", 0.8)
    assert charged >= 0.8
    expected.step(charged, sample_rate(cfg))
    assert discovery_only == pytest.approx(20.0, rel=0.01)               # as configured (no dropouts here)
    assert report["privacy"]["epsilon"] == pytest.approx(expected.epsilon(1e-3), rel=1e-9)
    assert report["privacy"]["epsilon"] > discovery_only
    assert report["privacy"]["units"]["user"]["rounds"] == 9
    events = [r for r in metrics_mod.read(run) if r.get("event") == "vocab_discovery"]
    assert len(events) == 1 and events[0]["round"] == 0 and events[0]["rounds"] == 8
    calls = Counter(t for t, _ in grid.replies)
    assert (dwire.MASKED in calls) == secure and (dwire.PLAIN in calls) == (not secure)
    if secure:
        assert all(r["wire"]["masked"] == CLIENTS for r in state["rounds"])
        assert ledger["units"]["user"]["mechanism"] == "distributed-gaussian"
    # one unit, opened as the privacy session opens it: the headline stated against the threat model
    assert report["privacy"]["threat_model"] == ("untrusted-server" if secure else "trusted-server")


def test_dp_accounting_composes_discovery_and_training_to_the_same_epsilon(tmp_path, write_scenario):
    """An independent implementation of the ledger's composition: Google's dp-accounting."""
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant
    from opacus.accountants import RDPAccountant

    cfg = _scenario(write_scenario, False)
    report = federate(InProcessGrid(CLIENTS), cfg, tmp_path / "run", progress=False)
    logging.disable(logging.WARNING)
    try:
        ref = RdpAccountant(RDPAccountant.DEFAULT_ALPHAS)
        for r in _state(tmp_path / "run")["rounds"]:
            ref.compose(dp_accounting.GaussianDpEvent(r["noise_multiplier"]))
        ref.compose(dp_accounting.PoissonSampledDpEvent(sample_rate(cfg), dp_accounting.GaussianDpEvent(0.8)))
        assert report["privacy"]["epsilon"] == pytest.approx(ref.get_epsilon(1e-3), rel=0.02)
    finally:
        logging.disable(logging.NOTSET)


def test_target_epsilon_covers_discovery_and_training(tmp_path, write_scenario):
    """Training's z spends what the discovery left: the run ends at the target, not above it."""
    cfg = _scenario(write_scenario, False, target_epsilon=30.0)
    cfg.federation.rounds = 3
    report = federate(InProcessGrid(CLIENTS), cfg, tmp_path / "run", progress=False)
    assert 29.5 <= report["privacy"]["epsilon"] <= 30.0 and report["privacy"]["stopped"] is None
    z = checkpoint.load(tmp_path / "run").extra["user_dp"]["noise_multiplier"]
    alone = compose.load(None, {"privacy.user_level": True, "federation.row_weight": "presence",
                                "privacy.target_epsilon": 30.0, "privacy.delta": 1e-3, "federation.rounds": 3,
                                "partition.num_clients": CLIENTS})
    from fedembed.privacy.params import resolve
    assert z > resolve(alone).noise_multiplier                             # more noise than without discovery


def test_a_killed_discovery_resumes_at_its_next_round_and_charges_each_round_once(tmp_path, write_scenario):
    cfg = _scenario(write_scenario, False)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        federate(InProcessGrid(CLIENTS, die_at_round=rounds.ROUND_BASE + 3), cfg, run, progress=False)
    assert [r["step"] for r in _state(run)["rounds"]] == [0, 1, 2]
    grid = InProcessGrid(CLIENTS)
    federate(grid, cfg, run, resume=True, progress=False)
    state = _state(run)
    assert [r["step"] for r in state["rounds"]] == list(range(8)) and state["done"]
    votes = [m for t, m in grid.replies if t == dwire.PLAIN]
    assert len(votes) == 5 * CLIENTS                                     # rounds 3..7 only
    ledger = checkpoint.load(run).extra["privacy"]
    assert ledger["units"]["user"]["rounds"] == 9
    # a finished run extended by a round: no discovery round again, the ledger not charged twice
    cfg.federation.rounds = 2
    grid = InProcessGrid(CLIENTS)
    federate(grid, cfg, run, resume=True, progress=False)
    assert not [t for t, _ in grid.replies if t == dwire.PLAIN]
    assert checkpoint.load(run).extra["privacy"]["units"]["user"]["rounds"] == 10


def test_a_vote_outside_the_sensitivity_is_refused_on_the_plain_path(tmp_path, write_scenario):
    """The Gaussian's calibration assumes every vote has L2 ≤ 1; the plain server checks it."""
    from flwr.app import RecordDict

    def inflate(content: RecordDict) -> RecordDict:
        if dwire.VOTES not in content.array_records:          # its training reply goes through
            return content
        v = content.array_records[dwire.VOTES][dwire.VOTES].numpy()
        return dwire.votes_content(np.asarray(v) * 50)

    cfg = _scenario(write_scenario, False)
    federate(InProcessGrid(CLIENTS, tamper={0: inflate}), cfg, tmp_path / "run", progress=False)
    done = _state(tmp_path / "run")["rounds"]
    refused = [r["step"] for r in done if r["wire"]["failed"]]
    assert len(refused) >= 5 and all(r["voters"] + r["wire"]["failed"] == CLIENTS for r in done)


def test_public_mode_is_untouched_and_discovered_mode_refuses_a_missing_vocabulary(tmp_path, write_scenario):
    from fedembed.data.prepare import prepare
    from fedembed.errors import CorpusError

    cfg = _scenario(write_scenario, False)
    with pytest.raises(CorpusError, match="discovery rounds"):
        prepare(cfg, tmp_path)
    assert not (tmp_path / "discovery").exists()


def test_clients_vote_from_their_own_text_only(tmp_path, write_scenario):
    """A client's words are exactly the tokens of the documents the partitioner gave it."""
    from fedembed.data.corpus import read_corpus
    from fedembed.data.partition import make
    from fedembed.discovery import local_words

    cfg = _scenario(write_scenario, False)
    words_dir, manifest = local_words.prepare(cfg, tmp_path)
    part = make(cfg.partition.name, CLIENTS, cfg.seed, cfg)
    expected: dict[int, set[str]] = {}
    for i, doc in enumerate(read_corpus(cfg.data.corpus, cfg.data.format)):
        expected.setdefault(part.client_of(i, doc), set()).update(doc.tokens)
    for p in range(CLIENTS):
        assert set(local_words.client_words(words_dir, p)) == expected.get(p, set())
    assert sum(manifest.tokens) == sum(len(tokenize(line)) for line in
                                       open(cfg.data.corpus, encoding="utf-8").read().splitlines())


def test_secure_dropouts_charge_the_noise_actually_in_the_sum(tmp_path, write_scenario):
    """A client that shared but did not mask leaves its noise share out: the ledger is charged
    z·√(m'/m), the noise present, as training's distributed DP is."""
    cfg = _scenario(write_scenario, True)
    cfg.secagg.drop_mask = 0.1
    report = federate(InProcessGrid(CLIENTS), cfg, tmp_path / "run", progress=False)
    done = _state(tmp_path / "run")["rounds"]
    short = [r for r in done if r["wire"]["masked"] < r["wire"]["shared"]]
    assert short
    for r in done:
        w = r["wire"]
        present = r["calibrated_noise_multiplier"] * (w["masked"] / w["shared"]) ** 0.5
        assert r["noise_multiplier"] == pytest.approx(present)
        assert r["voters"] == w["masked"]
    expected = Accountant("rdp")
    for r in done:
        expected.step(r["noise_multiplier"], 1.0)
    charged = checkpoint.load(tmp_path / "run").extra[accounting.MARK]["epsilon"]
    assert charged == pytest.approx(expected.epsilon(1e-3), rel=1e-9)
    assert charged > 20.0                                                  # more than planned: less noise
    assert report["privacy"]["epsilon"] > expected.epsilon(1e-3)


def test_dry_run_names_the_discovery_and_trainings_noise_from_what_it_leaves():
    cfg = compose.load(overrides={"vocab.mode": "discovered", "privacy.user_level": True,
                                  "federation.row_weight": "presence", "privacy.target_epsilon": 8.0,
                                  "vocab.discovery.epsilon": 4.0})
    lines = compose.describe(cfg)
    assert lines[0].startswith("vocabulary: discovered privately") and "ε = 4" in lines[0]
    alone = compose.describe(compose.load(overrides={"privacy.user_level": True, "federation.row_weight": "presence",
                                                     "privacy.target_epsilon": 8.0}))
    z = [float(line.split("z = ")[1].split()[0].rstrip(",")) for line in lines if "std z·C with z" in line]
    z0 = [float(line.split("z = ")[1].split()[0].rstrip(",")) for line in alone if "std z·C with z" in line]
    assert z[0] > z0[0]


def test_vote_rounds_keep_a_32_bit_ring_by_trading_bits():
    from fedembed.discovery.transport import vote_bits
    from fedembed.secagg.quantize import levels, ring_bits

    assert vote_bits(20, 1000, 3.0) == (20, 32)
    bits, ring = vote_bits(20, 240_000, 3.0)
    assert ring == 32 and bits < 20 and ring_bits(bits, 240_000, 3.0 * levels(bits)) == 32
    assert ring_bits(bits + 1, 240_000, 3.0 * levels(bits + 1)) == 64         # the most bits that fit
