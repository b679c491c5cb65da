"""Private vocabulary discovery (issue 16): domains, votes, noise and accounting, the protocol on known populations."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fedembed import compose
from fedembed.discovery import params as dparams, protocol, simulate
from fedembed.discovery.alphabet import Alphabet
from fedembed.discovery.domain import TrieLevel, WordList
from fedembed.discovery.protocol import DiscoveryState
from fedembed.discovery.votes import Population, client_votes, vote_vector
from fedembed.errors import ConfigError
from fedembed.privacy.accountant import Accountant

ABC = Alphabet("abc", 6)


def _cfg(delta: float = 0.0, secagg: bool = True, **discovery) -> object:
    overrides = {"privacy.user_level": True, "federation.row_weight": "presence", "vocab.mode": "discovered",
                 "partition.num_clients": 1000, "privacy.delta": delta, "secagg.enabled": secagg,
                 **{f"vocab.discovery.{k}": v for k, v in discovery.items()}}
    return compose.load(overrides=overrides)


# ---- the candidate domain -------------------------------------------------------------------------------

_words = st.text(alphabet="abc", min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(word=_words, depth=st.integers(0, 5), chunk=st.integers(1, 3), extra=st.lists(_words, max_size=5))
def test_a_words_slot_names_its_prefix_and_how_it_goes_on(word, depth, chunk, extra):
    """Every word under a surviving prefix has exactly one slot, and the slot decodes back to it."""
    prefixes = sorted({w[:depth] for w in [word, *extra] if len(w) >= depth})
    level = TrieLevel(ABC, prefixes, depth, chunk)
    slot = int(level.index_of([word])[0])
    if len(word) <= depth:
        assert slot == -1                            # it ended at an earlier level
        return
    assert 0 <= slot < level.size == len(prefixes) * (27 + 3 + 9 + 27 if chunk == 3 else
                                                      {1: 3 + 3, 2: 9 + 3 + 9}[chunk])
    text, ends = level.label(slot)
    assert ends == (len(word) <= depth + chunk) and bool(level.is_end(np.array([slot]))[0]) == ends
    assert text == word[:depth + chunk]
    if depth:                                        # a prefix that did not survive: no slot
        others = [p for p in prefixes if p != word[:depth]] or ["z" * depth]
        assert int(TrieLevel(ABC, others, depth, chunk).index_of([word])[0]) == -1


def test_every_slot_of_a_level_is_a_distinct_string():
    level = TrieLevel(ABC, ["ab", "ca"], 2, 2)
    labels = [level.label(i) for i in range(level.size)]
    assert len(set(labels)) == level.size == 2 * (9 + 3 + 9)
    assert {t for t, e in labels if e and t.startswith("ab")} >= {"aba", "abcc"}


def test_alphabet_drops_what_it_cannot_spell():
    assert Alphabet("ab'", 4).encode(["ab", "a'b", "abc", "ababa", ""])[0] == ["ab", "a'b"]
    with pytest.raises(ConfigError, match="no repeated symbol"):
        Alphabet("aa")


# ---- a client's vote ---------------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.lists(_words, max_size=30, unique=True), st.integers(1, 3))
def test_a_vote_has_l2_norm_one_or_zero_whatever_the_client_holds(words, chunk):
    """The sensitivity the noise is calibrated to: one client moves the sum by at most 1 (L2)."""
    level = TrieLevel(ABC, [""], 0, chunk)
    v = vote_vector(level, words)
    norm = float(np.linalg.norm(v))
    assert norm == pytest.approx(1.0) if words else norm == 0.0
    assert (v >= 0).all()
    assert vote_vector(level, words + words).tolist() == v.tolist()      # a word counts once


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_words, max_size=12), min_size=1, max_size=15), st.integers(0, 3), st.integers(1, 2))
def test_population_sum_is_the_sum_of_each_clients_vote(sets, depth, chunk):
    """The vectorised simulation against the client's own code, client by client."""
    prefixes = sorted({w[:depth] for s in sets for w in s if len(w) > depth}) or ["a" * depth]
    for dom in (TrieLevel(ABC, prefixes, depth, chunk), WordList(sorted({w for s in sets for w in s}) or ["a"])):
        expected = sum(vote_vector(dom, sorted(set(s))) for s in sets)
        np.testing.assert_allclose(Population(sets, ABC).vote_sum(dom), expected, atol=1e-12)


# ---- noise and accounting ------------------------------------------------------------------------------------

def test_rounds_noise_composes_to_the_discovery_epsilon_and_dp_accounting_agrees():
    """z_r = z₀/√w_r: together one Gaussian of multiplier z₀ (RDP adds 1/z²), spending ε at δ;
    Google's dp-accounting (RDP and PLD) composes the same rounds independently."""
    import dp_accounting
    from dp_accounting.pld import PLDAccountant
    from dp_accounting.rdp import RdpAccountant
    from opacus.accountants import RDPAccountant

    p = dparams.resolve(_cfg(epsilon=2.0))
    assert p.chunks == (3, 2, 2, 2, 2, 2, 2) and p.rounds == 8 and p.sample_rate == 1.0
    assert p.delta == pytest.approx(min(1e-6, 1000 ** -1.1))     # privacy.params.default_delta
    z0 = 1 / math.sqrt(sum(z ** -2 for z in p.noise_multipliers))
    trie, refine = p.noise_multipliers[0], p.noise_multipliers[-1]
    assert trie == pytest.approx(z0 / math.sqrt(0.6 / 7)) and refine == pytest.approx(z0 / math.sqrt(0.4))
    ours = Accountant.from_dict({"kind": "rdp", "history": [[z, 1.0, 1] for z in p.noise_multipliers]})
    assert 1.99 <= ours.epsilon(p.delta) <= 2.0
    single = Accountant("rdp")
    single.step(z0, 1.0)
    assert single.epsilon(p.delta) == pytest.approx(ours.epsilon(p.delta), rel=1e-6)
    logging.disable(logging.WARNING)
    try:
        rdp = RdpAccountant(RDPAccountant.DEFAULT_ALPHAS)
        pld = PLDAccountant()
        for z in p.noise_multipliers:
            rdp.compose(dp_accounting.GaussianDpEvent(z))
            pld.compose(dp_accounting.GaussianDpEvent(z))
    finally:
        logging.disable(logging.NOTSET)
    assert rdp.get_epsilon(p.delta) == pytest.approx(2.0, abs=0.02)
    assert pld.get_epsilon(p.delta) <= 2.0                 # PLD is tight: RDP's bound is above it


def test_sampled_rounds_are_accounted_with_their_rate():
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant
    from opacus.accountants import RDPAccountant

    # a trusted server keeps the sample secret: the headline credits the rate (privacy.params.threat_model)
    p = dparams.resolve(_cfg(epsilon=1.0, clients_per_round=100, refine_rounds=2, secagg=False))
    assert p.sample_rate == 0.1 and p.rounds == 9
    rdp = RdpAccountant(RDPAccountant.DEFAULT_ALPHAS)
    for z in p.noise_multipliers:
        rdp.compose(dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(z)))
    assert rdp.get_epsilon(p.delta) == pytest.approx(1.0, abs=0.02)
    # under SecAgg+ the server draws the voters itself: no amplification against it, ε met at q = 1
    s = dparams.resolve(_cfg(epsilon=1.0, clients_per_round=100, refine_rounds=2))
    assert s.sample_rate == 0.1 and all(a > b for a, b in zip(s.noise_multipliers, p.noise_multipliers))
    rdp = RdpAccountant(RDPAccountant.DEFAULT_ALPHAS)
    for z in s.noise_multipliers:
        rdp.compose(dp_accounting.GaussianDpEvent(z))
    assert rdp.get_epsilon(s.delta) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("overrides,msg", [
    ({"privacy.user_level": False}, "needs privacy.user_level = true"),
    ({"vocab.discovery.epsilon": 0.0}, "epsilon must be > 0"),
    ({"privacy.target_epsilon": 1.0, "vocab.discovery.epsilon": 1.0}, "must be below privacy.target_epsilon"),
    ({"vocab.discovery.trie_share": 1.0}, "trie_share must be in"),
    ({"vocab.discovery.chunk": 5}, "vote vector would hold"),
    ({"vocab.discovery.alphabet": "aab"}, "no repeated symbol"),
    ({"vocab.discovery.clients_per_round": 2000}, "clients_per_round"),
    ({"vocab.mode": "secret"}, "vocab.mode"),
    ({"privacy.denominator": "public"}, "rules out privacy.denominator"),
])
def test_bad_discovery_settings_are_refused_in_one_line(overrides, msg):
    base = {"privacy.user_level": True, "federation.row_weight": "presence", "vocab.mode": "discovered",
            "partition.num_clients": 1000}
    with pytest.raises(ConfigError, match=msg) as info:
        compose.load(overrides={**base, **overrides})
    assert "\n" not in str(info.value)


# ---- the protocol on populations with known answers ----------------------------------------------------------

def _population(rng: np.random.Generator, clients: int, heavy: list[str], share: float, own: int = 3,
                canary: str | None = None) -> list[set[str]]:
    """Heavy words each held by a `share` of the clients; every client also has `own` words no one else has."""
    sets = []
    for c in range(clients):
        mine = {w for w in heavy if rng.random() < share}
        mine |= {"".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=8)) + f"q{c}" for _ in range(own)}
        sets.append(mine)
    if canary is not None:
        sets[0].add(canary)
    return sets


HEAVY = ["the", "of", "and", "house", "tree", "walking", "talked", "federation", "embedding", "a", "theory",
         "thesis", "then", "there", "hous", "houses"]


def test_heavy_words_are_found_and_nothing_else():
    rng = np.random.default_rng(0)
    sets = _population(rng, 1000, HEAVY, 0.2)
    pop = Population(sets, Alphabet())
    state = simulate.discover(pop, dparams.resolve(_cfg(epsilon=4.0)), np.random.default_rng(1))
    found = [w for w, _ in state.vocabulary()]
    assert sorted(found) == sorted(HEAVY)                 # prefixes of each other, one letter apart: all told apart
    assert state.done and [r["kind"] for r in state.rounds][-1] == "refine"
    q = simulate.quality(found, pop.holders(), 100, Alphabet())
    assert (q.recall, q.precision, q.precision_real, q.truth) == (1.0, 1.0, 1.0, len(HEAVY))


def test_too_little_budget_finds_less_and_noise_passes_as_often_as_configured():
    """At a tiny ε the heavy words drown in the noise: fewer found; noise-made words appear at the
    configured rate (false_positives = 0.05 a run in expectation), not more."""
    sets = _population(np.random.default_rng(0), 300, HEAVY, 0.2)
    pop = Population(sets, Alphabet())
    # δ = N^-1.1, as this test was written for: at the default δ (now min(10⁻⁶, N^-1.1)) Opacus' RDP
    # orders (α ≤ 63) cannot certify an ε this small at any noise
    p = dparams.resolve(_cfg(epsilon=0.05, delta=1000 ** -1.1))
    junk, found = 0, 0
    for trial in range(20):
        words = simulate.discover(pop, p, np.random.default_rng(trial)).scores
        junk += len(set(words) - set(HEAVY))
        found += len(set(words) & set(HEAVY))
    assert found < 20 * len(HEAVY) / 2 and junk <= 3          # expected junk: 20 × 0.05 = 1


CANARY = "zyxwvutsrq"


@pytest.mark.slow      # 100 whole discoveries: ~30 s idle
def test_a_word_one_client_holds_is_never_found_over_100_trials():
    """The attack check: the canary's holder votes for it with weight ≤ 1 against noise of std ≥ z_min.
    Bound: P[found] ≤ e^ε·P[found without its holder] + δ, and without its holder the canary's
    final slot is noise alone, which passes with probability false_positives / |domain|."""
    sets = _population(np.random.default_rng(3), 400, HEAVY[:8], 0.3, canary=CANARY)
    sets[0] = {CANARY}                                    # its holder has nothing else: its whole vote on it
    pop = Population(sets, Alphabet())
    p = dparams.resolve(_cfg(epsilon=4.0))
    holders = pop.holders()
    found, singles, junk, bound = 0, 0, 0, 0.0
    for trial in range(100):
        state = simulate.discover(pop, p, np.random.default_rng(100 + trial))
        found += CANARY in state.scores
        singles += sum(holders.get(w) == 1 for w in state.scores)   # the ~1,200 words of one client each
        junk += sum(w not in holders for w in state.scores)         # noise-made strings: no one's data
        bound = max(bound, math.exp(p.epsilon) * p.false_positives / state.rounds[-1]["slots"] + p.delta)
    assert found == 0 and singles == 0
    assert junk <= 12                                     # 100 × false_positives = 5 expected
    assert bound < 0.01                                   # what ε = 4 promises here, per trial


def test_state_survives_json_and_resumes_where_it_stopped(tmp_path):
    sets = _population(np.random.default_rng(0), 300, HEAVY, 0.3)
    pop = Population(sets, Alphabet())
    p = dparams.resolve(_cfg(epsilon=8.0))
    rng = np.random.default_rng(5)
    state = DiscoveryState()
    dom = protocol.domain(state, p)
    z = protocol.noise_multiplier(state, p)
    protocol.absorb(state, p, dom, pop.vote_sum(dom) + rng.normal(0, z, dom.size), z,
                    {"noise_multiplier": z, "sample_rate": 1.0})
    state.save(tmp_path / "d.json")
    again = DiscoveryState.load(tmp_path / "d.json")
    assert again == state and again.step == 1 and again.prefixes
    finished = simulate.discover(pop, p, rng, again)
    assert finished.done and set(finished.scores) == set(HEAVY)
    assert [r["step"] for r in finished.rounds] == list(range(len(finished.rounds)))
    assert len(finished.history()) == len(finished.rounds) <= p.rounds


def test_thresholds_let_noise_pass_as_often_as_asked():
    rng = np.random.default_rng(0)
    tau = protocol.threshold(2.0, 5.0, 100_000)
    passed = [(rng.normal(0, 2.0, 100_000) > tau).sum() for _ in range(200)]
    assert np.mean(passed) == pytest.approx(5.0, rel=0.15)
    assert protocol.threshold(1.0, 10.0, 0) == np.inf


def test_client_votes_name_each_slot_once():
    level = TrieLevel(Alphabet(), [""], 0, 3)
    slots, w = client_votes(level, ["the", "then", "there", "thereby"])    # "the" ends; the others go on past it
    assert len(slots) == 2 and w == pytest.approx(1 / math.sqrt(2))
    assert {level.label(s) for s in slots} == {("the", True), ("the", False)}
