"""Guarantees that hold against the parties they name (issue 17, items 1–5 and 7): a run never ends
above its budget, dropouts included; ε is stated for each trust assumption and the headline is the
weakest the run makes; the neighbouring run without the target is what is accounted; aborted
rounds are charged; a release is charged before it is used, so a crash hides none."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from fedembed import checkpoint, compose, metrics
from fedembed.privacy import distributed
from fedembed.privacy.accountant import Accountant
from fedembed.privacy.write_ahead import WAL
from fedembed.run import federate
from fedembed.secagg import messages as msg
from inprocess_grid import InProcessGrid

Z, DELTA = 1.0, 0.01


def _eps(zs, q: float = 1.0, delta: float = DELTA) -> float:
    acc = Accountant()
    for z in zs:
        acc.step(z, q)
    return acc.epsilon(delta)


def _secure_dp(write_scenario, name="s.toml", **over):
    sections = {"partition": {"num_clients": 5}, "federation": {"rounds": 3, "row_weight": "presence"},
                "secagg": {"enabled": True},
                "privacy": {"user_level": True, "noise_multiplier": Z, "delta": DELTA, "clip": 1.0}}
    for k, v in over.items():
        sections.setdefault(k, {}).update(v)
    return compose.load(write_scenario(name, **sections))


def test_a_run_with_dropouts_never_ends_above_its_budget(tmp_path, write_scenario):
    """The review's repro, scaled down: q = 1, z = 1, δ = 0.01, 20 % of clients drop at the mask stage,
    a budget with room for exactly two rounds at z. Before, rounds were charged z·√(m'/m) < z after a
    preview at z, and the run ended above its budget."""
    budget = (_eps([Z, Z]) + _eps([Z, Z, Z])) / 2
    cfg = _secure_dp(write_scenario, privacy={"max_epsilon": budget}, secagg={"drop_mask": 0.2, "max_dropout": 0.4})
    report = federate(InProcessGrid(5), cfg, tmp_path / "run", progress=False)
    rows = metrics.read(tmp_path / "run")
    assert sum(r.get("secagg", {}).get("dropped", {}).get("mask", 0) for r in rows) > 0   # dropouts happened
    charged = [r["privacy"]["units"]["user"]["params"].get("effective_noise_multiplier", Z)
               for r in rows if "privacy" in r]
    assert all(z >= Z - 1e-12 for z in charged)                 # no round released less noise than previewed
    assert report["privacy"]["epsilon"] <= budget
    assert report["privacy"]["epsilon"] == pytest.approx(_eps(charged))


def test_epsilon_is_stated_for_each_party_and_the_headline_is_against_the_server(tmp_path, write_scenario):
    """Under SecAgg+ the server draws the cohort: against it, no amplification (q = 1); against whoever
    sees only the released tables, q = clients_per_round / num_clients. Cross-checked with dp-accounting."""
    import dp_accounting
    from dp_accounting import dp_event
    from dp_accounting.rdp import rdp_privacy_accountant

    cfg = _secure_dp(write_scenario, federation={"clients_per_round": 4})      # q = 4/5, Poisson
    report = federate(InProcessGrid(5), cfg, tmp_path / "run", progress=False)
    p = report["privacy"]
    assert p["threat_model"] == "untrusted-server" and p["epsilon"] == p["epsilon_by_threat"]["server"]
    charged = [r["privacy"]["units"]["user"]["params"].get("effective_noise_multiplier", Z)
               for r in metrics.read(tmp_path / "run") if "privacy" in r]

    def independent(q: float) -> float:
        acc = rdp_privacy_accountant.RdpAccountant()
        for z in charged:
            acc.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)))
        return acc.get_epsilon(DELTA)
    assert p["epsilon"] == pytest.approx(independent(1.0), rel=1e-3)
    assert p["epsilon_by_threat"]["released-tables"] == pytest.approx(independent(0.8), rel=1e-3)
    assert p["epsilon_by_threat"]["released-tables"] < p["epsilon"]
    assert isinstance(dp_accounting.__name__, str)


def test_a_trusted_server_run_states_its_guarantee_against_the_released_tables(tmp_path, write_scenario):
    cfg = _secure_dp(write_scenario, secagg={"enabled": False}, federation={"clients_per_round": 4})
    p = federate(InProcessGrid(5), cfg, tmp_path / "run", progress=False)["privacy"]
    assert p["threat_model"] == "trusted-server" and p["epsilon"] == pytest.approx(_eps([Z] * 3, q=0.8))
    assert p["epsilon_by_threat"] == {"released-tables": p["epsilon"], "server": None}   # it sees every update


@given(f=st.integers(2, 200), extra=st.integers(0, 200), z=st.floats(0.1, 10))
def test_the_charged_multiplier_is_that_of_the_sum_without_the_target(f, extra, z):
    """An independent computation: with survivor floor f each client adds σ²/(f − 1); the neighbouring
    run without the target holds m' − 1 shares, whose total std over the sensitivity C is the charge."""
    survivors, sigma, clip = f + extra, z * 1.7, 1.7
    share = distributed.share_std(sigma, f)
    without_target = math.sqrt((survivors - 1) * share ** 2) / clip
    assert distributed.effective_multiplier(z, survivors, f) == pytest.approx(without_target)
    assert distributed.effective_multiplier(z, survivors, f) >= z * (1 - 1e-12)   # every unmasked round


def test_an_aborted_round_is_charged(tmp_path, write_scenario):
    cfg = _secure_dp(write_scenario, federation={"rounds": 2})
    grid = InProcessGrid(5, fail={(1, msg.MASK): {0, 1, 2, 3}})        # round 1: one masked update, abort
    report = federate(grid, cfg, tmp_path / "run", progress=False)
    rows = metrics.read(tmp_path / "run")
    assert rows[0]["event"] == "secagg_abort" and report["privacy"]["rounds"] == 2
    assert report["privacy"]["epsilon"] == pytest.approx(
        _eps([Z, rows[1]["privacy"]["units"]["user"]["params"]["effective_noise_multiplier"]]))


@pytest.mark.parametrize("secure", [True, False])
def test_a_crash_after_a_release_cannot_hide_it(tmp_path, write_scenario, monkeypatch, secure):
    """The server dies after round 2's sum was released but before its checkpoint: the resumed run
    re-runs round 2 and is charged for both releases (3 rounds of the run, 4 releases)."""
    cfg = _secure_dp(write_scenario, secagg={"enabled": secure})
    out = tmp_path / "run"
    save = checkpoint.save

    def die_at_round_two(run_dir, state):
        if state.round == 2:
            raise KeyboardInterrupt("killed after round 2's release")
        save(run_dir, state)
    monkeypatch.setattr(checkpoint, "save", die_at_round_two)
    with pytest.raises(KeyboardInterrupt):
        federate(InProcessGrid(5), cfg, out, progress=False)
    monkeypatch.setattr(checkpoint, "save", save)
    assert checkpoint.load(out).round == 1 and (out / WAL).is_file()
    report = federate(InProcessGrid(5), cfg, out, resume=True, progress=False)
    assert report["privacy"]["rounds"] == 4 and checkpoint.load(out).round == 3
    charged = checkpoint.load(out).extra["privacy"]["units"]["user"]["accountant"]["history"]
    assert sum(s for _, _, s in charged) == 4
    zs = [z for z, _, s in charged for _ in range(s)]
    assert report["privacy"]["epsilon"] == pytest.approx(_eps(zs))


def test_without_a_crash_the_write_ahead_log_changes_nothing(tmp_path, write_scenario):
    cfg = _secure_dp(write_scenario, secagg={"enabled": False})
    federate(InProcessGrid(5), cfg, tmp_path / "run", progress=False, resume=False)
    again = federate(InProcessGrid(5), cfg, tmp_path / "run", progress=False, resume=True)   # nothing left to run
    assert again["privacy"]["rounds"] == 3 and again["privacy"]["epsilon"] == pytest.approx(_eps([Z] * 3))
    assert np.isfinite(again["privacy"]["epsilon"])
