"""Adversarial clients: each attack's crafted update, the malicious draw, and attack success
on an in-process federation (no Ray)."""
from __future__ import annotations

import numpy as np
import pytest

from fedembed import compose
from fedembed.run import federate
from fedembed.attacks.adversaries import ADVERSARIES, boost, malicious_partitions, stages
from fedembed.attacks.adversaries.report import neighbour_stats
from fedembed.errors import ConfigError
from fedembed.compose import client_stages as stages_for
from fedembed.updates import ClientContext, ClientUpdate
from inprocess_grid import InProcessGrid

V, D = 6, 4
WORDS = ["a", "b", "c", "d", "e", "f"]


def _cfg(**over):
    return compose.load(None, over)


@pytest.fixture
def vocab_dir(tmp_path):
    """A run directory with vocab.tsv next to data/, as prepare() leaves it."""
    (tmp_path / "data").mkdir()
    (tmp_path / "vocab.tsv").write_text("".join(f"{w}\t{100 - i}\n" for i, w in enumerate(WORDS)), encoding="utf-8")
    return tmp_path / "data"


def _ctx(pid: int, shard_dir, rnd: int = 1) -> ClientContext:
    rng = np.random.default_rng(0)
    g = {"in_vectors": rng.normal(size=(V, D)).astype(np.float32),
         "out_vectors": rng.normal(size=(V, D)).astype(np.float32)}
    return ClientContext(pid, rnd, g, np.arange(100, 100 - V, -1), str(shard_dir))


def _update(seed: int = 1) -> ClientUpdate:
    rng = np.random.default_rng(seed)
    tables = {k: rng.normal(size=(V, D)).astype(np.float32) for k in ("in_vectors", "out_vectors")}
    w = np.array([3, 0, 2, 1, 0, 5], dtype=np.float32)
    return ClientUpdate(tables, {"in_vectors": w.copy(), "out_vectors": w.copy()})


def _attacker_cfg(attack: str, **over):
    base = {"adversary.attack": attack, "adversary.fraction": 0.5, "partition.num_clients": 4}
    if attack in ("targeted_poison", "sybil"):
        base.update({"adversary.target": "a", "adversary.toward": "c"})
    base.update(over)
    return _cfg(**base)


def _attack(cfg, pid: int, shard_dir, u: ClientUpdate | None = None, rnd: int = 1) -> ClientUpdate:
    ctx = _ctx(pid, shard_dir, rnd)
    return ADVERSARIES.get(cfg.adversary.attack)(cfg, ctx)(u or _update())


def test_malicious_partitions_are_deterministic_and_sized_by_fraction():
    cfg = _cfg(**{"adversary.attack": "scaling", "adversary.fraction": 0.3, "partition.num_clients": 10})
    mal = malicious_partitions(cfg)
    assert len(mal) == 3 and mal == malicious_partitions(cfg) and mal <= set(range(10))
    other = _cfg(**{"adversary.attack": "scaling", "adversary.fraction": 0.3, "partition.num_clients": 10, "seed": 5})
    assert len(malicious_partitions(other)) == 3
    tiny = _cfg(**{"adversary.attack": "scaling", "adversary.fraction": 0.01, "partition.num_clients": 10})
    assert len(malicious_partitions(tiny)) == 1  # > 0 means at least one
    assert malicious_partitions(_cfg(**{"adversary.fraction": 0.5})) == frozenset()  # attack "none"


def test_only_malicious_partitions_get_the_attack_stage(vocab_dir):
    cfg = _attacker_cfg("scaling")
    mal = malicious_partitions(cfg)
    for pid in range(4):
        assert bool(stages(cfg, _ctx(pid, vocab_dir))) == (pid in mal)
    assert stages(cfg, None) == []
    honest = next(p for p in range(4) if p not in mal)
    assert len(stages_for(cfg, _ctx(honest, vocab_dir))) + 1 == len(stages_for(cfg, _ctx(min(mal), vocab_dir)))


def test_scaling_and_sign_flip_boost_the_trained_delta(vocab_dir):
    cfg = _attacker_cfg("scaling", **{"adversary.scale": 7.0})
    u0 = _update()
    u = _attack(cfg, 0, vocab_dir, _update())
    for k in u0.tables:
        np.testing.assert_allclose(u.tables[k], 7.0 * u0.tables[k], rtol=1e-6)
        np.testing.assert_array_equal(u.weights[k], u0.weights[k])
    auto = _attacker_cfg("sign_flip")  # scale 0: num_clients / malicious = 4 / 2
    assert boost(auto) == 2.0
    u = _attack(auto, 0, vocab_dir, _update())
    np.testing.assert_allclose(u.tables["in_vectors"], -2.0 * u0.tables["in_vectors"], rtol=1e-6)


def test_gaussian_noise_replaces_touched_rows_with_noise_of_the_given_std(vocab_dir):
    cfg = _attacker_cfg("gaussian_noise", **{"adversary.noise_std": 3.0})
    big = ClientUpdate({"in_vectors": np.zeros((4000, 50), np.float32)},
                       {"in_vectors": np.r_[np.ones(2000), np.zeros(2000)].astype(np.float32)})
    u = _attack(cfg, 1, vocab_dir, big)
    t = u.tables["in_vectors"]
    assert np.all(t[2000:] == 0)                       # untouched rows stay untouched
    assert abs(t[:2000].std() - 3.0) < 0.05 and abs(t[:2000].mean()) < 0.05
    again = _attack(cfg, 1, vocab_dir, ClientUpdate({"in_vectors": np.zeros((4000, 50), np.float32)},
                                                    {"in_vectors": big.weights["in_vectors"]}))
    np.testing.assert_array_equal(again.tables["in_vectors"], t)  # reproducible from (seed, round, partition)


def test_targeted_poison_moves_a_toward_b_and_keeps_other_rows_honest(vocab_dir):
    cfg = _attacker_cfg("targeted_poison", **{"adversary.strength": 0.5, "adversary.scale": 4.0})
    ctx = _ctx(0, vocab_dir)
    u0 = _update()
    u = ADVERSARIES.get("targeted_poison")(cfg, ctx)(_update())
    g = ctx.global_tables["in_vectors"]
    np.testing.assert_allclose(u.tables["in_vectors"][0], 4.0 * 0.5 * (g[2] - g[0]), rtol=1e-5)  # A = "a", B = "c"
    np.testing.assert_array_equal(u.tables["in_vectors"][1:], u0.tables["in_vectors"][1:])
    np.testing.assert_array_equal(u.tables["out_vectors"], u0.tables["out_vectors"])
    # applied to A's row with scale 1 and strength 1, the crafted delta lands A exactly on B
    cfg1 = _attacker_cfg("targeted_poison", **{"adversary.scale": 1.0})
    u1 = ADVERSARIES.get("targeted_poison")(cfg1, ctx)(_update())
    np.testing.assert_allclose(g[0] + u1.tables["in_vectors"][0], g[2], rtol=1e-5)
    # A's weight counts even when the attacker's data never had A
    u2 = _update()
    u2.weights["in_vectors"][0] = 0
    assert ADVERSARIES.get("targeted_poison")(cfg, ctx)(u2).weights["in_vectors"][0] == 1.0


def test_targeted_poison_refuses_words_outside_the_vocabulary(vocab_dir):
    cfg = _attacker_cfg("targeted_poison", **{"adversary.toward": "zebra"})
    with pytest.raises(ConfigError, match="adversary.toward: 'zebra' is not in the vocabulary"):
        _attack(cfg, 0, vocab_dir)


@pytest.mark.parametrize("base", ["targeted_poison", "gaussian_noise"])
def test_sybils_send_identical_updates_whatever_their_data(vocab_dir, base):
    cfg = _attacker_cfg("sybil", **{"adversary.sybil_base": base})
    mal = sorted(malicious_partitions(cfg))
    assert len(mal) == 2
    a = _attack(cfg, mal[0], vocab_dir, _update(1))
    b = _attack(cfg, mal[1], vocab_dir, _update(2))
    for k in a.tables:
        np.testing.assert_array_equal(a.tables[k], b.tables[k])
        np.testing.assert_array_equal(a.weights[k], b.weights[k])
    if base == "targeted_poison":  # only A's row of the word vectors is sent
        assert np.flatnonzero(a.weights["in_vectors"]).tolist() == [0]
        assert not a.weights["out_vectors"].any() and not a.tables["out_vectors"].any()
    else:  # one shared draw per round, a new one the next round
        c = _attack(cfg, mal[0], vocab_dir, _update(1), rnd=2)
        assert not np.array_equal(c.tables["in_vectors"], a.tables["in_vectors"])


def test_adversary_config_is_checked_naming_the_key():
    with pytest.raises(ConfigError, match="adversary.attack: 'bogus'"):
        _cfg(**{"adversary.attack": "bogus"})
    with pytest.raises(ConfigError, match="adversary.fraction must be in"):
        _cfg(**{"adversary.fraction": 1.5})
    with pytest.raises(ConfigError, match="adversary.target and adversary.toward must name"):
        _cfg(**{"adversary.attack": "targeted_poison"})
    with pytest.raises(ConfigError, match="adversary.sybil_base"):
        _cfg(**{"adversary.attack": "sybil", "adversary.sybil_base": "scaling"})
    with pytest.raises(ConfigError, match="adversary.strength must be > 0"):
        _cfg(**{"adversary.strength": 0.0})


def test_neighbour_stats_rank_counts_words_closer_than_b():
    v = np.array([[1, 0], [0.9, 0.1], [0, 1], [1, 0.05]], dtype=np.float32)
    s = neighbour_stats(v, 0, 1)
    assert s["rank"] == 2 and s["cosine"] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert neighbour_stats(v, 0, 3)["rank"] == 1 and neighbour_stats(v, 0, 2)["rank"] == 3


# ---- attack success on a small federation (Lee corpus, 3 clients, in-process)

def _run(tmp_path, write_scenario, name: str, **adversary):

    sections = {"federation": {"rounds": 2}, "model": {"dim": 16, "window": 3, "negative": 3}}
    if adversary:
        sections["adversary"] = adversary
    cfg = compose.load(write_scenario(f"{name}.toml", **sections))
    return federate(InProcessGrid(3), cfg, tmp_path / name, progress=False)


def test_targeted_poisoning_raises_cos_a_b_against_a_clean_run(tmp_path, write_scenario):
    pair = {"target": "police", "toward": "taliban"}
    clean = _run(tmp_path, write_scenario, "clean", attack="targeted_poison", fraction=0.0, **pair)
    poisoned = _run(tmp_path, write_scenario, "poisoned", attack="targeted_poison", fraction=0.34, **pair)
    sybil = _run(tmp_path, write_scenario, "sybil", attack="sybil", fraction=0.67, **pair)
    c, p, s = clean["attack"], poisoned["attack"], sybil["attack"]
    assert c["malicious_count"] == 0 and p["malicious_count"] == 1 and s["malicious_count"] == 2
    assert c["before"]["initial"] == p["before"]["initial"]            # same seed, same round-0 tables
    # two rounds of a tiny model leave every frequent word's vector close to a common direction
    # (clean cos ≈ 0.99), so the rank is the telling figure: B becomes A's nearest neighbour
    assert p["after"]["cosine"] > c["after"]["cosine"] and s["after"]["cosine"] > c["after"]["cosine"]
    assert p["after"]["rank"] == 1 and s["after"]["rank"] == 1 and c["after"]["rank"] > 20
    assert poisoned["aggregation"] == {"rule": "rowwise", "composes_with_secagg": True,
                                       "reason": poisoned["aggregation"]["reason"]}
