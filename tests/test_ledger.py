"""The privacy ledger: monotone, persisted across resume, and a budget that stops before it is exceeded."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from fedembed import compose
from fedembed import checkpoint, config as config_mod, metrics
from fedembed.run import federate
from fedembed.privacy.accountant import Accountant
from fedembed.privacy.ledger import RECORD, RECORD_DELTA, RECORD_EPSILON, USER, Ledger
from fedembed.privacy.session import PrivacySession
from inprocess_grid import InProcessGrid


def _user_ledger(kind: str = "rdp", delta: float = 1e-5) -> Ledger:
    ledger = Ledger()
    ledger.open(USER, "gaussian", delta, Accountant(kind))
    return ledger


def _spend_all(ledger: Ledger, rounds: list[tuple[float, float]]) -> list[float]:
    for i, (z, q) in enumerate(rounds, 1):
        ledger.spend(USER, z, q, {"noise_multiplier": z, "sample_rate": q})
        ledger.close_round(i)
    return [e["units"][USER]["epsilon"] for e in ledger.entries]


@settings(max_examples=10, deadline=None)
@given(rounds=st.lists(st.tuples(st.floats(0.5, 5.0), st.floats(0.001, 0.2)), min_size=1, max_size=4))
def test_epsilon_never_decreases_round_after_round(rounds):
    eps = _spend_all(_user_ledger("rdp"), rounds)
    assert all(b >= a for a, b in zip(eps, eps[1:])) and eps[0] > 0


def test_prv_ledger_is_monotone_too():
    eps = _spend_all(_user_ledger("prv"), [(1.0, 0.1)] * 3 + [(3.0, 0.05)] * 2)
    assert all(b >= a for a, b in zip(eps, eps[1:])) and eps[0] > 0


def test_ledger_survives_json_including_infinite_epsilon():
    ledger = _user_ledger()
    ledger.spend(USER, 1.0, 0.1, {"clip": 1.0})
    ledger.close_round(1)
    ledger.open("clip-only", "gaussian", 1e-5, Accountant())
    ledger.spend("clip-only", 0.0, 1.0, {})                       # no noise: ε = ∞
    ledger.close_round(2)
    back = Ledger.from_dict(json.loads(json.dumps(ledger.to_dict(), allow_nan=False)))
    assert back.to_dict() == ledger.to_dict()
    assert math.isinf(back.units["clip-only"].epsilon) and back.summary()["units"]["clip-only"]["epsilon"] is None
    assert back.units[USER].epsilon == ledger.units[USER].epsilon > 0


def test_budget_stops_before_the_round_that_would_exceed_it():
    ledger, budget = _user_ledger(), 3.0
    rnd = 0
    while not ledger.would_exceed(rnd + 1, USER, 2.0, 0.5, budget):
        rnd += 1
        ledger.spend(USER, 2.0, 0.5, {})
        ledger.close_round(rnd)
    assert rnd > 1 and ledger.units[USER].epsilon <= budget < ledger.preview(USER, 2.0, 0.5)
    assert ledger.stopped["round"] == rnd + 1 and "privacy budget reached" in ledger.stopped["message"]
    assert ledger.units[USER].accountant.steps == rnd              # the preview spent nothing


def test_record_level_epsilon_is_the_running_max_of_what_clients_report():
    ledger = Ledger()
    ledger.report(RECORD, 1.5, 1e-6)
    ledger.close_round(1)
    ledger.report(RECORD, 0.7, 1e-6)                                 # another client, less spent
    assert ledger.close_round(2)["units"][RECORD]["epsilon"] == 1.5
    assert ledger.summary()["unit"] == RECORD and ledger.summary()["mechanism"] == "dp-sgd"
    with pytest.raises(ValueError, match="δ changed"):
        ledger.report(RECORD, 2.0, 1e-5)


def test_session_collects_record_level_epsilon_from_reply_metrics():
    session = PrivacySession(config_mod.Config(), {})
    for eps in (0.4, 1.1, 0.9):
        session.observe({RECORD_EPSILON: eps, RECORD_DELTA: 1e-6})
    entry = session.end_round(1)
    assert entry["units"][RECORD] == {"mechanism": "dp-sgd", "epsilon": 1.1, "delta": 1e-6, "params": {}}
    assert session.summary()["epsilon"] == 1.1


# ---- with the server loop (in-process grid)

def _private(write_scenario, rounds: int, **privacy) -> config_mod.Config:
    return compose.load(write_scenario(federation={"rounds": rounds, "row_weight": "presence"},
                                          privacy={"user_level": True, "noise_multiplier": 1.0, **privacy}))


def _eps(run_dir) -> list[float]:
    return [r["privacy"]["units"][USER]["epsilon"] for r in metrics.read(run_dir) if "privacy" in r]


def test_resumed_run_continues_the_ledger(tmp_path, write_scenario):
    straight = federate(InProcessGrid(3), _private(write_scenario, 4), tmp_path / "a", progress=False)
    federate(InProcessGrid(3), _private(write_scenario, 2), tmp_path / "b", progress=False)
    assert checkpoint.load(tmp_path / "b").extra["privacy"]["units"][USER]["rounds"] == 2
    resumed = federate(InProcessGrid(3), _private(write_scenario, 4), tmp_path / "b", resume=True, progress=False)
    assert _eps(tmp_path / "b") == _eps(tmp_path / "a") and len(_eps(tmp_path / "a")) == 4
    assert resumed["privacy"]["epsilon"] >= straight["privacy"]["epsilon"] > 0
    assert resumed["privacy"]["rounds"] == 4
    ledger = Ledger.from_dict(checkpoint.load(tmp_path / "b").extra["privacy"])
    assert [e["round"] for e in ledger.entries] == [1, 2, 3, 4]


def test_budget_stop_in_the_server_loop_finalizes_with_what_it_has(tmp_path, write_scenario):
    probe = Accountant()
    delta = min(1e-6, 3 ** -1.1)                                   # the auto δ for 3 clients
    probe.step(1.0, 1.0, 2)
    two = probe.epsilon(delta)
    probe.step(1.0, 1.0)
    budget = (two + probe.epsilon(delta)) / 2                      # room for 2 rounds, not 3
    cfg = _private(write_scenario, 4, max_epsilon=budget)
    out = tmp_path / "run"
    report = federate(InProcessGrid(3), cfg, out, progress=False)
    rows = metrics.read(out)
    assert [r["round"] for r in rows] == [1, 2, 3] and rows[-1]["event"] == "privacy_budget_stop"
    assert "round 3 would bring user-level ε" in rows[-1]["message"]
    assert report["privacy"]["epsilon"] == pytest.approx(two) and report["privacy"]["epsilon"] <= budget
    assert report["privacy"]["stopped"]["round"] == 3 and (out / "embeddings.txt").is_file()
    assert checkpoint.load(out).round == 2
    again = federate(InProcessGrid(3), cfg, out, resume=True, progress=False)   # still no room
    assert again["privacy"]["epsilon"] == report["privacy"]["epsilon"] and checkpoint.load(out).round == 2
    assert [r["round"] for r in metrics.read(out)] == [1, 2, 3]
