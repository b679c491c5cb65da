"""`fedembed plan` (issue 18.4) and research mode (18.5): the predicted signal-to-noise against what a
run measures, and a simulation whose noise is scaled to a larger deployment, labelled as such."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fedembed import compose, metrics
from fedembed.cli import main
from fedembed.errors import ConfigError
from fedembed.privacy.accountant import Accountant
from fedembed.privacy.plan import Probe, band_rows, expected_holders, measured_snr, predict, summed_norm
from fedembed.run import federate
from inprocess_grid import InProcessGrid

DP = {"user_level": True, "noise_multiplier": 1.0, "clip": 0.5, "denominator": "public", "delta": 1e-6}


def test_summed_norm_spans_independent_to_aligned():
    a, n = np.array([2.0]), np.array([9.0])
    assert summed_norm(a, n, 1.0)[0] == pytest.approx(18.0)          # aligned: n·a
    assert summed_norm(a, n, 0.0)[0] == pytest.approx(6.0)           # independent: √n·a


def test_prediction_scales_with_the_cohort_the_noise_and_the_dimension():
    counts = np.arange(2000, 0, -1).astype(float)
    probe = Probe(10, 1.0, 50.0, np.full(2000, 0.1), 0.5, np.ones(2000))
    base = dict(counts=counts, population=10_000, rounds=100, dim=64, clip=1.0, probe=probe, epsilon=8.0,
                delta=1e-6, sample_rate=0.01)
    p1 = predict(cohort=100, noise_multiplier=1.0, **base)
    p2 = predict(cohort=100, noise_multiplier=2.0, **base)
    assert p2.snr_round["0-100"] == pytest.approx(p1.snr_round["0-100"] / 2)
    assert p1.snr_run["0-100"] == pytest.approx(p1.snr_round["0-100"] * 10)          # √T
    assert "cohort of" in " ".join(predict(cohort=1, noise_multiplier=50.0, **base).knobs)


def test_released_rows_carry_the_signal_and_the_others_none():
    """privacy.release_rows = K: the bands past K are not released (SNR 0), the noise norm covers K
    rows only, and the knob that suggests fewer rows is not offered again."""
    counts = np.arange(2000, 0, -1).astype(float)
    probe = Probe(10, 1.0, 50.0, np.full(2000, 0.1), 0.5, np.ones(2000))
    base = dict(counts=counts, population=10_000, rounds=100, dim=64, clip=1.0, probe=probe, epsilon=8.0,
                delta=1e-6, sample_rate=0.01, cohort=100, noise_multiplier=50.0, model_dim=32)
    every, first = predict(**base), predict(**base, released=100)
    assert first.snr_round["0-100"] == pytest.approx(every.snr_round["0-100"])
    assert every.snr_round["100-1000"] > 0 and first.snr_round["100-1000"] == 0
    assert first.noise_norm == pytest.approx(every.noise_norm * np.sqrt(100 / 2000))
    assert "release_rows" in " ".join(every.knobs) and "release_rows" not in " ".join(first.knobs)
    assert any("model.dim" in k and int(k.split("model.dim ")[1].split()[0]) < 32 for k in every.knobs)


def test_measured_snr_reads_the_bands_of_the_noiseless_sum():
    counts = np.array([5.0, 4.0, 3.0])
    sums = {"a": np.array([[3.0], [0.0], [0.0]]), "b": np.array([[4.0], [0.0], [1.0]])}
    assert measured_snr(sums, 1.0, counts) == {"0-100": pytest.approx(1.0 / math.sqrt(2))}   # median of 5, 0, 1


@pytest.mark.slow
def test_the_plan_is_within_twice_the_signal_to_noise_a_run_measures(tmp_path, write_scenario):
    """The issue's check at one point: the plan's round-1 SNR of the most frequent words against the
    round-1 SNR the trusted server measures on the noiseless sum (the benchmark checks more)."""
    cfg = compose.load(write_scenario(partition={"name": "iid", "num_clients": 40},
                                      federation={"rounds": 2, "row_weight": "presence"},
                                      train={"mode": "fedsgd", "lr": 0.05, "min_lr": 0.05},
                                      secagg={"enabled": False}, privacy=DP))
    report = federate(InProcessGrid(40), cfg, tmp_path / "run", progress=False)
    rows = metrics.read(tmp_path / "run")
    measured = rows[0]["privacy"]["snr"]["0-100"]
    predicted = json.loads((tmp_path / "run" / "report.json").read_text())["privacy"] if report else None
    from fedembed import checkpoint

    plan = checkpoint.load(tmp_path / "run").extra["plan"]
    assert predicted is not None and 0.5 <= plan["snr_round"]["0-100"] / measured <= 2.0


def test_plan_cli_prints_a_verdict_and_refuses_a_non_private_scenario(tmp_path, write_scenario, capsys):
    path = write_scenario(partition={"name": "iid", "num_clients": 6}, federation={"row_weight": "presence"},
                          secagg={"enabled": False}, privacy=DP)
    assert main(["plan", "--config", str(path), "--out", str(tmp_path / "plan"), "--probe", "4", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["verdict"].startswith("plan: ε = ") and set(plan["snr_run"]) >= {"0-100"}
    assert plan["noise_multiplier"] == 1.0 and plan["probe"]["users"] == 4
    plain = write_scenario("plain.toml", secagg={"enabled": False})
    assert main(["plan", "--config", str(plain), "--out", str(tmp_path / "p2")]) == 2
    assert "privacy.user_level" in capsys.readouterr().err


def test_research_mode_scales_the_noise_and_labels_its_epsilon(tmp_path, write_scenario):
    over = {**DP, "noise_population": 100_000, "noise_cohort": 2_000}
    cfg = compose.load(write_scenario(partition={"name": "iid", "num_clients": 4},
                                      federation={"rounds": 2, "row_weight": "presence"},
                                      secagg={"enabled": False}, privacy=over))
    report = federate(InProcessGrid(4), cfg, tmp_path / "run", progress=False)
    p = report["privacy"]
    assert p["simulated"] is True and p["deployment"]["population"] == 100_000
    deployment, simulated = Accountant(), Accountant()
    deployment.step(1.0, 2_000 / 100_000, 2)
    simulated.step(1.0 * 4 / 2_000, 1.0, 2)          # the noise a cohort of 4 actually got: z·m/m'
    assert p["epsilon"] == pytest.approx(deployment.epsilon(1e-6))
    assert p["epsilon_by_threat"]["simulated-users"] == pytest.approx(simulated.epsilon(1e-6))
    assert p["epsilon_by_threat"]["simulated-users"] > p["epsilon"]      # the users simulated get far less
    entry = metrics.read(tmp_path / "run")[0]["privacy"]["units"]["user"]["params"]
    assert entry["noise_std"] == pytest.approx(1.0 * 0.5 * 4 / 2_000)


def test_research_mode_refuses_what_it_cannot_scale(write_scenario):
    with pytest.raises(ConfigError, match="at least partition.num_clients"):
        compose.load(write_scenario(privacy={**DP, "noise_population": 2}, secagg={"enabled": False},
                                    federation={"row_weight": "presence"}))
    with pytest.raises(ConfigError, match="trusted server"):
        compose.load(write_scenario(privacy={**DP, "noise_population": 1000}, secagg={"enabled": True},
                                    federation={"row_weight": "presence"}))


def test_bands_and_holders():
    bands = band_rows(np.arange(150, 0, -1))
    assert list(bands) == ["0-100", "100-1000"] and len(bands["0-100"]) == 100
    assert expected_holders(np.array([0.0, 1e9]), 100, 10) == pytest.approx([0.0, 10.0])
