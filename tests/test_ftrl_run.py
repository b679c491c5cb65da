"""DP-FTRL and the server optimisers in the round loop: the public schedule decides who takes
part, the ledger holds exactly the tree's ε (no amplification), and a resumed run continues the
optimiser's state as if it had not stopped."""
from __future__ import annotations

import numpy as np
import pytest

from fedembed import checkpoint, compose, metrics
from fedembed.errors import ConfigError
from fedembed.privacy import tree_accounting as ta
from fedembed.privacy.schedule import schedule_for
from fedembed.run import federate
from inprocess_grid import InProcessGrid

FTRL = {"user_level": True, "mechanism": "ftrl_tree", "noise_multiplier": 2.0, "clip": 1.0,
        "denominator": "public", "delta": 1e-6}


def _ftrl(write_scenario, rounds=4, **over):
    sections = {"federation": {"rounds": rounds, "clients_per_round": 1, "row_weight": "presence"},
                "secagg": {"enabled": False}, "privacy": dict(FTRL)}
    for k, v in over.items():
        sections.setdefault(k, {}).update(v)
    return compose.load(write_scenario(**sections))


def test_ftrl_follows_the_public_schedule_and_charges_the_trees_epsilon(tmp_path, write_scenario):
    cfg = _ftrl(write_scenario)
    grid = InProcessGrid(3)
    report = federate(grid, cfg, tmp_path / "run", progress=False)
    rows = metrics.read(tmp_path / "run")
    schedule = schedule_for(cfg)
    trained = [[int(c) for c in r["clients_trained"]] for r in rows] if "clients_trained" in rows[0] else None
    assert [r["clients"] for r in rows] == [len(schedule.clients(s)) for s in range(1, 5)] == [1, 1, 1, 1]
    assert trained is None or trained == [schedule.clients(s) for s in range(1, 5)]
    factor = ta.sensitivity_factor(schedule, 4, 0)
    p = report["privacy"]
    assert p["mechanism"] == "ftrl-tree" and p["threat_model"] == "trusted-server"
    assert p["epsilon"] == pytest.approx(ta.epsilon(2.0, factor, 1e-6, "rdp"), rel=1e-3)
    assert p["epsilon_by_threat"]["server"] is None
    entry = rows[-1]["privacy"]["units"]["user"]["params"]
    assert entry["tree_step"] == 4 and entry["sensitivity_factor"] == pytest.approx(factor)


def test_ftrl_resumes_its_tree_and_its_ledger(tmp_path, write_scenario):
    straight = federate(InProcessGrid(3), _ftrl(write_scenario, rounds=4), tmp_path / "a", progress=False)
    federate(InProcessGrid(3), _ftrl(write_scenario, rounds=2), tmp_path / "b", progress=False)
    resumed = federate(InProcessGrid(3), _ftrl(write_scenario, rounds=4), tmp_path / "b", resume=True,
                       progress=False)
    assert resumed["privacy"]["epsilon"] == pytest.approx(straight["privacy"]["epsilon"], rel=1e-9)
    assert checkpoint.load(tmp_path / "b").extra["user_dp"]["tree"]["steps"] == 4


@pytest.mark.parametrize("over, match", [
    ({"secagg": {"enabled": True}, "federation": {"clients_per_round": 0}}, "central noise"),
    ({"privacy": {"adaptive_clip": True, "restart_every": 2, "clip_count_stddev": 10.0}}, "adaptive_clip is not wired"),
    ({"privacy": {"denominator": "noisy"}}, "denominator"),
])
def test_ftrl_refuses_what_it_cannot_compose_with(write_scenario, over, match):
    with pytest.raises(ConfigError, match=match):
        _ftrl(write_scenario, **over)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_a_resumed_run_continues_the_server_optimizer_bit_for_bit(tmp_path, write_scenario, optimizer):
    def cfg(rounds):                                   # the optimiser's moments live in the checkpoint
        return compose.load(write_scenario(f"{optimizer}{rounds}.toml", secagg={"enabled": False},
                                           federation={"rounds": rounds, "server_optimizer": optimizer,
                                                       "server_lr": 0.5}))
    federate(InProcessGrid(3), cfg(3), tmp_path / "a", progress=False)
    with pytest.raises(KeyboardInterrupt):                                # killed as round 3 starts
        federate(InProcessGrid(3, die_at_round=3), cfg(3), tmp_path / "b", progress=False)
    assert checkpoint.load(tmp_path / "b").round == 2 and checkpoint.load(tmp_path / "b").arrays
    federate(InProcessGrid(3), cfg(3), tmp_path / "b", resume=True, progress=False)
    a, b = checkpoint.load(tmp_path / "a").tables, checkpoint.load(tmp_path / "b").tables
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
