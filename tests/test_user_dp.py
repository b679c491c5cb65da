"""User-level DP-FedAvg: clipping bound, noise level, row-wise division, adaptive clipping, config, server loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from fedembed import compose
from fedembed import config as config_mod, metrics
from fedembed.run import federate
from fedembed.errors import ConfigError
from fedembed.federation import server
from fedembed.privacy import params as params_mod
from fedembed.privacy.sampling import poisson_sample
from fedembed.privacy.user_dp import CLIP_BIT, CentralGaussian, ClipUpdate, update_norm
from fedembed.updates import ClientUpdate
from inprocess_grid import InProcessGrid, tamper_update


def _cfg(**over) -> config_mod.Config:
    base = {"privacy.user_level": True, "federation.row_weight": "presence", "partition.num_clients": 100,
            "federation.clients_per_round": 10}
    return compose.load(None, {**base, **over})


def _mechanism(rng_seed: int = 0, **over) -> CentralGaussian:
    return CentralGaussian.start(_cfg(**over), rng=np.random.default_rng(rng_seed))


# ---- client side: the clip

_finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(table=arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 8)), elements=_finite),
       clip=st.floats(1e-3, 1e3), scale=st.floats(1e-3, 10.0))
def test_clipped_update_norm_never_exceeds_c(table, clip, scale):
    weights = (np.abs(table[:, 0]) > 1).astype(np.float32)
    u = ClipUpdate(clip, scale, send_bit=True)(ClientUpdate({"t": table.copy(), "u": -table.copy()},
                                                            {"t": weights, "u": weights.copy()}))
    assert update_norm(u.tables, u.weights) <= clip
    assert u.metrics[CLIP_BIT] in (0.5, -0.5)


def test_small_updates_pass_unchanged_large_ones_keep_their_direction():
    t = np.full((4, 2), 0.1, dtype=np.float32)
    w = np.array([1, 1, 0, 0], dtype=np.float32)
    small = ClipUpdate(10.0, 0.5, send_bit=True)(ClientUpdate({"t": t.copy()}, {"t": w.copy()}))
    np.testing.assert_array_equal(small.tables["t"], t)
    np.testing.assert_array_equal(small.weights["t"], 0.5 * w)            # the weights are sent as β·w
    assert small.metrics[CLIP_BIT] == 0.5
    big = ClipUpdate(0.01, 0.5, send_bit=True)(ClientUpdate({"t": t.copy()}, {"t": w.copy()}))
    assert big.metrics[CLIP_BIT] == -0.5
    ratio = big.tables["t"][0, 0] / big.weights["t"][0]                   # delta ÷ weight is kept
    assert ratio == pytest.approx(0.1 / 0.5, rel=1e-5)
    zero = ClipUpdate(1.0, 0.1)(ClientUpdate({"t": np.zeros((3, 2), np.float32)}, {"t": np.zeros(3, np.float32)}))
    assert update_norm(zero.tables, zero.weights) == 0 and CLIP_BIT not in zero.metrics


# ---- server side: noise, division, adaptive clipping

def test_noise_standard_deviation_is_z_times_c():
    mech = _mechanism(**{"privacy.noise_multiplier": 1.3, "privacy.clip": 0.7})
    noise = mech.add_noise({"a": np.zeros((500, 400))})["a"]
    n, sigma = noise.size, 1.3 * 0.7
    assert mech.noise_std == pytest.approx(sigma)
    # sample sd has relative standard error 1/√(2n) ≈ 0.16 % here: 2 % is > 10 standard errors
    assert noise.std() == pytest.approx(sigma, rel=0.02)
    assert abs(noise.mean()) < 6 * sigma / math.sqrt(n)


def test_adaptive_clipping_shares_z_between_update_and_bit():
    mech = _mechanism(**{"privacy.noise_multiplier": 0.6, "privacy.adaptive_clip": True})
    p = mech.params
    assert p.bit_stddev == pytest.approx(10 / 20)                          # expected clients / 20
    combined = (p.update_noise_multiplier ** -2 + (2 * p.bit_stddev) ** -2) ** -0.5
    assert combined == pytest.approx(p.noise_multiplier)                    # what the accountant composes
    assert mech.noise_std == pytest.approx(p.update_noise_multiplier * p.clip)


def test_noisy_rowwise_mean_divides_well_covered_rows_and_leaves_untouched_rows():
    mech = _mechanism(**{"privacy.noise_multiplier": 1.0, "privacy.clip": 1.0, "privacy.weight_scale": 0.1})
    v, d = 20000, 4
    weights = np.zeros(v)
    weights[:10] = 1000 * 0.1                      # 1000 clients touched rows 0-9 (sent as β·w)
    sums = np.zeros((v, d))
    sums[:10] = 1000 * 0.5                         # each with delta 0.5 per coordinate
    out = mech.noisy_mean({"t": sums}, {"t": weights})["t"]
    np.testing.assert_allclose(out[:10], 0.5, atol=0.1)
    untouched_moved = np.count_nonzero(np.abs(out[10:]).sum(1))
    assert untouched_moved < 0.005 * (v - 10)     # P(N(0,1) ≥ 3) = 0.13 %


def test_no_noise_and_no_client_means_no_change():
    mech = _mechanism(**{"privacy.noise_multiplier": 0.0})
    out = mech.noisy_mean({"t": np.zeros((5, 2))}, {"t": np.zeros(5)})["t"]
    assert not out.any()


def test_server_refuses_unclipped_updates_and_bad_bits():
    from fedembed.errors import UpdateError

    mech = _mechanism(**{"privacy.noise_multiplier": 0.5, "privacy.clip": 1.0, "privacy.adaptive_clip": True})
    ok = ({"t": np.full((2, 2), 0.1, np.float32)}, {"t": np.full(2, 0.1, np.float32)})
    mech.check_reply(*ok, {CLIP_BIT: 0.5})
    with pytest.raises(UpdateError, match="exceeds the clipping bound"):
        mech.check_reply({"t": np.ones((2, 2), np.float32)}, ok[1], {CLIP_BIT: 0.5})
    with pytest.raises(UpdateError, match="±0.5"):
        mech.check_reply(*ok, {CLIP_BIT: 3.0})


def test_adaptive_clip_moves_c_to_the_target_quantile():
    rng = np.random.default_rng(1)
    mech = _mechanism(**{"privacy.noise_multiplier": 0.0, "privacy.adaptive_clip": True, "privacy.clip": 0.01,
                         "privacy.target_quantile": 0.5, "privacy.clip_lr": 0.2})
    for _ in range(300):
        norms = rng.lognormal(0.0, 0.5, size=10)                   # median 1
        mech.adapt(float(np.sum(np.where(norms <= mech.clip, 0.5, -0.5))))
    assert 0.8 < mech.clip < 1.25
    assert mech.round_params()["next_clip"] == mech.clip


def test_poisson_sampling_rate_and_the_all_clients_case():
    rng = np.random.default_rng(0)
    sizes = [len(poisson_sample(range(1000), 0.05, rng)) for _ in range(200)]
    assert np.mean(sizes) == pytest.approx(50, rel=0.05) and np.std(sizes) > 3     # the count varies
    assert poisson_sample([3, 1, 2], 1.0, rng) == [1, 2, 3]


# ---- config: refused before any training

@pytest.mark.parametrize("over, match", [
    ({"privacy.user_level": False, "privacy.noise_multiplier": 1.0}, r"noise_multiplier needs privacy\.user_level"),
    ({"privacy.user_level": False, "privacy.max_epsilon": 1.0}, r"max_epsilon needs privacy\.user_level"),
    ({"privacy.noise_multiplier": -1.0}, r"privacy\.noise_multiplier must be >= 0"),
    ({"privacy.clip": 0.0}, r"privacy\.clip must be > 0"),
    ({"privacy.accountant": "moments"}, r"privacy\.accountant: 'moments' is not one of \['prv', 'rdp'\]"),
    ({"privacy.delta": 0.01}, r"privacy\.delta \(0\.01\) must be below 1/num_clients = 0\.01"),
    ({"federation.row_weight": "count"}, r"user_level needs bounded per-row weights"),
    ({"federation.aggregate": "fedavg"}, r"user_level needs bounded per-row weights"),
    ({"privacy.noise_multiplier": 1.0, "privacy.target_epsilon": 2.0}, r"not both"),
    ({"privacy.max_epsilon": 4.0}, r"ε is infinite"),
    ({"privacy.target_quantile": 1.5}, r"target_quantile must be in \[0, 1\]"),
    ({"privacy.adaptive_clip": True, "privacy.noise_multiplier": 1.0, "federation.clients_per_round": 2},
     r"must be below 2·clip_count_stddev"),
])
def test_invalid_privacy_settings_are_refused(over, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**over)


def test_defaults_are_not_private_and_target_epsilon_derives_z_against_the_run_s_threat_model():
    """δ defaults to min(1e-6, N^-1.1); target_epsilon is met against the weakest trust the run asks
    for: with SecAgg+ (the default) the server draws the cohort, so no amplification is credited."""
    from fedembed.privacy.accountant import Accountant

    assert not config_mod.Config().privacy.user_level
    for secure, credited in ((True, 1.0), (False, 0.1)):
        cfg = _cfg(**{"privacy.target_epsilon": 4.0, "federation.rounds": 20, "secagg.enabled": secure})
        p = params_mod.resolve(cfg)
        assert p.delta == 1e-6 and p.sample_rate == 0.1 and p.budget == 4.0 and p.headline_rate == credited
        assert p.threat_model == ("untrusted-server" if secure else "trusted-server")
        acc = Accountant()
        acc.step(p.noise_multiplier, credited, 20)
        assert 3.9 < acc.epsilon(p.delta) <= 4.0


def test_the_default_delta_is_at_most_one_in_a_million():
    assert params_mod.default_delta(100) == 1e-6            # N^-1.1 = 6.3e-3 at N = 100
    assert params_mod.default_delta(10 ** 6) == pytest.approx(10 ** -6.6)


def test_shipped_user_dp_scenario_resolves():
    from pathlib import Path

    cfg = compose.load(Path(__file__).parent.parent / "simulations" / "scenarios" / "user_dp.toml")
    p = params_mod.resolve(cfg)
    assert p.sample_rate == 0.2 and p.delta == 1e-6 and p.budget == 8.0
    assert p.update_noise_multiplier > p.noise_multiplier > 0.5       # the clip bit took its share


# ---- the server loop (in-process grid, no Ray)

def test_private_run_reports_its_guarantee_and_noisy_rounds(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(federation={"rounds": 2, "row_weight": "presence"},
                                         privacy={"user_level": True, "noise_multiplier": 0.8, "clip": 0.5,
                                                  "adaptive_clip": True, "clip_count_stddev": 1.0}))
    report = federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)
    rows = metrics.read(tmp_path / "run")
    eps = [r["privacy"]["units"]["user"]["epsilon"] for r in rows]
    assert 0 < eps[0] < eps[1] == report["privacy"]["epsilon"]
    assert report["privacy"]["unit"] == "user" and report["privacy"]["mechanism"] == "gaussian"
    assert report["privacy"]["delta"] == 1e-6 and report["privacy"]["threat_model"] == "trusted-server"
    assert report["privacy"]["epsilon_by_threat"] == {"released-tables": report["privacy"]["epsilon"], "server": None}
    params = rows[0]["privacy"]["units"]["user"]["params"]
    assert params["clip"] == 0.5 and params["next_clip"] == rows[1]["privacy"]["units"]["user"]["params"]["clip"]
    assert all(r["rejected"] == 0 for r in rows)          # every client clipped: the server's check passes


def test_a_round_with_no_client_sampled_is_still_accounted(tmp_path, write_scenario, monkeypatch):
    cfg = compose.load(write_scenario(federation={"rounds": 2, "row_weight": "presence",
                                                     "clients_per_round": 1},
                                         privacy={"user_level": True, "noise_multiplier": 1.0}))
    monkeypatch.setattr(server, "sample_clients", lambda cfg, active, rnd: [] if rnd == 1 else active[:1])
    report = federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)
    rows = metrics.read(tmp_path / "run")
    assert [r["clients"] for r in rows] == [0, 1]
    assert report["privacy"]["rounds"] == 2
    params = rows[0]["privacy"]["units"]["user"]["params"]
    assert params["sample_rate"] == pytest.approx(1 / 3)


def test_server_rejects_a_client_that_does_not_clip(tmp_path, write_scenario):
    cfg = compose.load(write_scenario(federation={"rounds": 1, "row_weight": "presence"},
                                         privacy={"user_level": True, "noise_multiplier": 1.0, "clip": 0.1}))

    def unclipped(tables, weights):
        tables["in_vectors"][0] += 10.0
        return tables, weights
    federate(InProcessGrid(3, tamper={1: tamper_update(unclipped)}), cfg, tmp_path / "run", progress=False)
    assert metrics.read(tmp_path / "run")[0]["rejected"] == 1


def test_non_private_report_still_has_the_privacy_keys(tmp_path, write_scenario):
    report = federate(InProcessGrid(3), compose.load(write_scenario(federation={"rounds": 1})),
                        tmp_path / "run", progress=False)
    assert report["privacy"]["epsilon"] is None and report["privacy"]["mechanism"] == "none"
    assert {"delta", "unit"} <= set(report["privacy"])
    assert "privacy" not in metrics.read(tmp_path / "run")[0]


# ---- the public denominator (privacy.denominator = "public")

@settings(max_examples=200, deadline=None)
@given(count=st.integers(0, 10**7), n=st.integers(2, 10**6))
def test_presence_share_is_the_poisson_limit_of_the_exact_chance(count, n):
    """Independent check: c occurrences thrown uniformly at N clients miss a given client with
    probability (1 − 1/N)^c exactly; 1 − exp(−c/N) is below that chance by at most c/N²."""
    from fedembed.privacy.public_rows import presence_share

    ours = float(presence_share(np.array([count]), n)[0])
    exact = 1.0 - math.exp(count * math.log1p(-1.0 / n))
    assert 0.0 <= ours <= 1.0
    assert ours <= exact + 1e-12
    assert exact - ours <= count / n**2 + 1e-12


@settings(max_examples=60, deadline=None)
@given(counts=arrays(np.int64, st.integers(1, 50), elements=st.integers(0, 10**6)),
       n=st.integers(1, 10**5), m=st.floats(0.5, 1e4), floor=st.floats(1e-4, 1.0))
def test_public_denominator_is_bounded_and_monotone_in_the_counts(counts, n, m, floor):
    from fedembed.privacy.public_rows import public_denominator

    d = public_denominator(counts, n, m, floor)
    assert (d >= m * floor * (1 - 1e-12)).all() and (d <= m * (1 + 1e-12)).all()
    order = np.argsort(counts, kind="stable")
    assert (np.diff(d[order]) >= 0).all()


def test_public_denominator_sends_no_weights_and_clips_the_deltas_alone():
    t = np.full((4, 2), 1.0, dtype=np.float32)
    w = np.ones(4, dtype=np.float32)
    u = ClipUpdate(1.0, 0.1, send_weights=False)(ClientUpdate({"t": t.copy()}, {"t": w.copy()}))
    assert not u.weights["t"].any()                                     # nothing about which rows were touched
    assert update_norm(u.tables, {}) == pytest.approx(1.0, rel=1e-5)     # the whole of C goes to the deltas
    np.testing.assert_allclose(u.tables["t"], t / math.sqrt(8), rtol=1e-5)
    stages = __import__("fedembed.privacy.user_dp", fromlist=["client_stages"]).client_stages(
        _cfg(**{"privacy.denominator": "public"}))
    assert [s.send_weights for s in stages] == [False]


def test_public_denominator_divides_every_row_by_its_expected_cohort():
    counts = np.array([0, 5, 50, 5000, 10**6])
    cfg_over = {"privacy.denominator": "public", "privacy.min_share": 0.01, "privacy.noise_multiplier": 0.0}
    mech = CentralGaussian.start(_cfg(**cfg_over), rng=np.random.default_rng(0), public_counts=counts)
    m = 10.0                                                            # 10 of 100 clients expected per round
    expected = m * np.maximum(1 - np.exp(-counts / 100.0), 0.01)
    np.testing.assert_allclose(mech.denominator, expected)
    sums = np.arange(10, dtype=np.float64).reshape(5, 2)
    out = mech.noisy_mean({"t": sums}, {"t": np.zeros(5)})["t"]       # the weights are not read
    np.testing.assert_allclose(out, sums / expected[:, None], rtol=1e-6)
    noisy = CentralGaussian.start(_cfg(**{**cfg_over, "privacy.noise_multiplier": 2.0, "privacy.clip": 0.5}),
                                  rng=np.random.default_rng(1), public_counts=np.full(3, 10**6))
    out = noisy.noisy_mean({"t": np.zeros((3, 40000))}, {"t": np.zeros(3)})["t"]
    assert out.std() == pytest.approx(2.0 * 0.5 / m, rel=0.02)          # z·C over the cohort, every row
    with pytest.raises(ValueError, match="public vocabulary counts"):
        CentralGaussian.start(_cfg(**cfg_over))


@pytest.mark.parametrize("over, match", [
    ({"privacy.denominator": "mean"}, r"privacy\.denominator: 'mean' is not one of \['noisy', 'public'\]"),
    ({"privacy.min_share": 0.0}, r"privacy\.min_share must be in \(0, 1\]"),
    ({"privacy.min_share": 1.5}, r"privacy\.min_share must be in \(0, 1\]"),
])
def test_invalid_public_denominator_settings_are_refused(over, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**over)


def test_private_run_with_the_public_denominator(tmp_path, write_scenario):
    priv = {"user_level": True, "noise_multiplier": 0.8, "clip": 0.5}
    fed = {"rounds": 2, "row_weight": "presence"}
    public = federate(InProcessGrid(3), compose.load(write_scenario(
        federation=fed, privacy={**priv, "denominator": "public", "min_share": 0.2})), tmp_path / "a", progress=False)
    noisy = federate(InProcessGrid(3), compose.load(write_scenario(federation=fed, privacy=priv)),
                       tmp_path / "b", progress=False)
    rows = metrics.read(tmp_path / "a")
    assert all(r["rejected"] == 0 for r in rows)
    assert rows[0]["privacy"]["units"]["user"]["params"]["denominator"] == "public"
    assert public["privacy"]["epsilon"] == noisy["privacy"]["epsilon"] > 0   # the same mechanism, the same ε
