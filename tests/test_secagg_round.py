"""The server loop with secure aggregation on an in-process grid (no Ray): the same tables as
plain aggregation up to quantization, masked uploads only, dropouts, clean aborts, and the
distributed-DP ledger."""
from __future__ import annotations

import numpy as np
import pytest

from fedembed import checkpoint, compose, metrics, models
from fedembed.errors import ConfigError, FedembedError
from fedembed.run import federate
from fedembed.secagg import messages as msg
from inprocess_grid import InProcessGrid


def _run(write_scenario, out, grid, name="s.toml", **sections):
    cfg = compose.load(write_scenario(name, **sections))
    federate(grid, cfg, out, progress=False)
    return cfg, metrics.read(out)


def test_capped_count_weights_use_a_32_bit_ring_and_match_the_plain_run_within_the_step(tmp_path, write_scenario):
    """The default: counts capped at federation.max_row_weight, 24-bit values in Z_2^32."""
    _, rows = _run(write_scenario, tmp_path / "secure", InProcessGrid(3), secagg={"enabled": True})
    cfg, _ = _run(write_scenario, tmp_path / "plain", InProcessGrid(3), "p.toml", secagg={"enabled": False})
    assert rows[0]["secagg"]["ring_bits"] == 32 and rows[0]["secagg"]["bits"] == 24
    step = 64 * cfg.federation.max_row_weight / (2 ** 23 - 1)  # one client's quantization step
    a, b = checkpoint.load(tmp_path / "secure").tables, checkpoint.load(tmp_path / "plain").tables
    for name in a:  # 2 rounds × 3 clients' rounding errors of at most a step, over a weight ≥ 1
        diff = np.abs(a[name] - b[name]).max()
        assert 0 < diff <= 2 * 3 * step


def test_secure_run_gives_the_plain_runs_tables_up_to_quantization(tmp_path, write_scenario):
    uncapped = {"max_row_weight": 0}  # uncapped count weights: 40-bit values in Z_2^64
    grid = InProcessGrid(3)
    _, rows = _run(write_scenario, tmp_path / "secure", grid, secagg={"enabled": True}, federation=uncapped)
    _run(write_scenario, tmp_path / "plain", InProcessGrid(3), "p.toml", secagg={"enabled": False},
         federation=uncapped)
    a, b = checkpoint.load(tmp_path / "secure").tables, checkpoint.load(tmp_path / "plain").tables
    for name in a:  # 40-bit quantization of ranges ±2^20: a step of 2^−19 per client and value
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, rtol=0)
    assert [r["clients_ok"] for r in rows] == [3, 3]
    assert rows[0]["secagg"]["survivors"] == 3 and rows[0]["secagg"]["ring_bits"] == 64
    # the channel keys once; round 1 shares on its own, round 2's shares ride round 1's unmask
    assert grid.calls[msg.KEYS] == 3 and grid.calls[msg.SHARE] == 3
    assert grid.calls[msg.MASK] == grid.calls[msg.UNMASK] == 6
    # what the server received from clients in the mask stage: a masked vector only (tests/test_secagg_disclosure.py)
    for mtype, content in grid.seen:
        if mtype == msg.MASK:
            assert set(content.array_records) == {msg.MASKED}


def test_a_round_beyond_the_threshold_aborts_cleanly_and_the_next_goes_on(tmp_path, write_scenario):
    # round 1: two of three clients fail to unmask, so no secret can be rebuilt; round 2 is whole
    grid = InProcessGrid(3, fail={(1, msg.UNMASK): {0, 1}})
    cfg, rows = _run(write_scenario, tmp_path / "run", grid, secagg={"enabled": True},
                     federation={"rounds": 2})
    assert rows[0]["event"] == "secagg_abort" and "needed" in rows[0]["message"]
    assert rows[0]["clients_ok"] == 0 and rows[0]["secagg"]["dropped"]["unmask"] == 2
    assert rows[1]["clients_ok"] == 3 and "event" not in rows[1]

    grid1 = InProcessGrid(3, fail={(1, msg.UNMASK): {0, 1}})
    cfg1 = compose.load(write_scenario("one.toml", secagg={"enabled": True}, federation={"rounds": 1}))
    with pytest.raises(FedembedError, match="trained nothing — all 1 round.s. aborted"):   # no report of
        federate(grid1, cfg1, tmp_path / "one", progress=False)                        # random tables
    assert not (tmp_path / "one" / "report.json").exists()
    init = models.make(cfg1).init_tables(len(checkpoint.load(tmp_path / "one").tables["in_vectors"]), cfg1.seed)
    for name, table in checkpoint.load(tmp_path / "one").tables.items():
        np.testing.assert_array_equal(table, init[name])      # global state unchanged


def test_dropouts_at_every_stage_within_the_threshold_are_survived(tmp_path, write_scenario):
    fail = {(1, msg.SHARE): {0}, (2, msg.MASK): {1}, (3, msg.UNMASK): {2}}
    _, rows = _run(write_scenario, tmp_path / "run", InProcessGrid(5, fail=fail),
                   partition={"num_clients": 5}, secagg={"enabled": True}, federation={"rounds": 3})
    assert [r.get("event") for r in rows] == [None] * 3
    assert [r["clients_ok"] for r in rows] == [4, 4, 5]
    assert rows[0]["secagg"]["dropped"]["share"] == 1 and rows[1]["secagg"]["dropped"]["mask"] == 1
    assert rows[2]["secagg"]["dropped"]["unmask"] == 1


def test_sharing_ahead_drops_an_exchange_a_round_and_changes_nothing_else(tmp_path, write_scenario):
    """Seeded dropouts at every stage: the same clients drop at the same stages, round by round,
    whether each round shares on its own or its shares ride the previous round's unmask."""
    drops = {"drop_share": 0.15, "drop_mask": 0.15, "drop_unmask": 0.15, "threshold": 0.51}
    runs = {}
    for ahead in (True, False):
        grid = InProcessGrid(6)
        _, rows = _run(write_scenario, tmp_path / str(ahead), grid, f"{ahead}.toml", partition={"num_clients": 6},
                       secagg={"enabled": True, "share_ahead": ahead, **drops}, federation={"rounds": 4})
        runs[ahead] = grid, [(r.get("event"), r["clients_ok"], r["secagg"]["dropped"]) for r in rows]
    assert runs[True][1] == runs[False][1]
    dropped = [d for _, _, d in runs[False][1]]
    assert all(sum(d[st] for d in dropped) > 0 for st in ("share", "mask", "unmask"))   # every path taken
    assert any(ok > 0 for _, ok, _ in runs[True][1])
    calls = {ahead: grid.calls for ahead, (grid, _) in runs.items()}
    assert calls[True][msg.SHARE] < calls[False][msg.SHARE]
    assert calls[True][msg.MASK] == calls[False][msg.MASK] and calls[True][msg.UNMASK] == calls[False][msg.UNMASK]


def test_a_sampled_federation_advertises_keys_and_shares_ahead(tmp_path, write_scenario):
    """8 clients, 3 a round: new clients' keys ride the unmask exchange of two rounds before
    theirs, so from round 3 on a round is two exchanges, with the same clients and outcomes."""
    from collections import Counter

    runs = {}
    for ahead in (True, False):
        grid = InProcessGrid(8)
        _, rows = _run(write_scenario, tmp_path / str(ahead), grid, f"{ahead}.toml", partition={"num_clients": 8},
                       secagg={"enabled": True, "share_ahead": ahead},
                       federation={"rounds": 6, "clients_per_round": 3})
        exchanges = Counter(min(int(g.split(".")[0]) for g in batch) for batch in grid.batches
                            if all(batch))         # not the partition discovery (no group)
        runs[ahead] = [exchanges[r] for r in range(1, 7)], [(r["clients"], r["clients_ok"]) for r in rows], grid
    (ahead, rows_a, grid_a), (plain, rows_p, grid_p) = runs[True], runs[False]
    assert rows_a == rows_p == [(3, 3)] * 6
    assert ahead[2:] == [2, 2, 2, 2] and ahead[0] == 4      # round 1: keys, share, mask, unmask
    assert all(n in (3, 4) for n in plain) and 4 in plain[1:]   # a new client costs a keys exchange
    keyed = [sum(msg.STATE_KEYS in c.state.config_records for c in g.contexts.values()) for g in (grid_a, grid_p)]
    assert grid_a.calls[msg.KEYS] == keyed[0] and grid_p.calls[msg.KEYS] == keyed[1]   # asked once per client
    assert grid_a.calls[msg.SHARE] < grid_p.calls[msg.SHARE]


def test_a_client_whose_unmask_message_failed_is_asked_for_its_shares_again(tmp_path, write_scenario):
    grid = InProcessGrid(5, fail={(1, msg.UNMASK): {2}})
    _, rows = _run(write_scenario, tmp_path / "run", grid, partition={"num_clients": 5}, secagg={"enabled": True},
                   federation={"rounds": 3})
    assert rows[0]["secagg"]["dropped"]["unmask"] == 1 and rows[0]["clients_ok"] == 5   # its vector was in
    assert [r["clients_ok"] for r in rows[1:]] == [5, 5]
    assert grid.calls[msg.SHARE] == 5 + 1            # round 1, then client 2 alone in round 2
    assert grid.calls[msg.UNMASK] == 15
    assert sum(msg.NEXT in c.config_records for t, c in grid.seen if t == msg.UNMASK) == 4 + 5   # rounds 1, 2


def test_seeded_stage_dropouts_from_the_scenario(tmp_path, write_scenario):
    _, rows = _run(write_scenario, tmp_path / "run", InProcessGrid(6), partition={"num_clients": 6},
                   secagg={"enabled": True, "drop_share": 0.2, "drop_mask": 0.2, "threshold": 0.51},
                   federation={"rounds": 3})
    dropped = sum(r["secagg"]["dropped"]["share"] + r["secagg"]["dropped"]["mask"] for r in rows)
    assert dropped > 0
    assert all(r.get("event") == "secagg_abort" or r["clients_ok"] == 6 - r["failed"] for r in rows)


def test_distributed_dp_charges_the_noise_actually_present_without_the_target(tmp_path, write_scenario):
    """Five clients, shares calibrated for a floor of 3 survivors (max_dropout 0.4): round 1 loses one
    client after the noise was calibrated, round 2 aborts at unmasking, round 3 is whole. Each round is
    charged z·√((m' − 1)/(f − 1)) — the noise of the sum without the target's own share — never less
    than z; the aborted round is charged too (item 17.4), and ε is that composition at q = 1 (the
    server draws the cohort: no amplification against it)."""
    from fedembed.privacy.accountant import Accountant

    grid = InProcessGrid(5, fail={(1, msg.MASK): {4}, (2, msg.UNMASK): {0, 1, 2, 3}})
    _, rows = _run(write_scenario, tmp_path / "run", grid, partition={"num_clients": 5},
                   secagg={"enabled": True, "max_dropout": 0.4},
                   privacy={"user_level": True, "noise_multiplier": 2.0, "clip": 1.0},
                   federation={"rounds": 3, "row_weight": "presence"})
    r1, r2, r3 = (r["privacy"]["units"]["user"] for r in rows)
    assert r1["mechanism"] == "distributed-gaussian"
    z1, z3 = 2.0 * np.sqrt((4 - 1) / (3 - 1)), 2.0 * np.sqrt((5 - 1) / (3 - 1))
    assert r1["params"]["effective_noise_multiplier"] == pytest.approx(z1)
    assert rows[1]["event"] == "secagg_abort" and r2["epsilon"] > r1["epsilon"]        # charged though aborted
    assert r3["params"]["effective_noise_multiplier"] == pytest.approx(z3)
    assert rows[0]["secagg"]["ring_bits"] == 32 and rows[0]["secagg"]["bits"] == 20
    saved = checkpoint.load(tmp_path / "run").extra["privacy"]["units"]["user"]
    assert saved["rounds"] == 3 and saved["threat_model"] == "untrusted-server"
    against_server, released = Accountant(), Accountant()
    for z in (z1, r2["params"]["effective_noise_multiplier"], z3):
        against_server.step(z, 1.0)
        released.step(z, 1.0)            # every client is in every round here: q = 1 for both views
    assert r3["epsilon"] == pytest.approx(against_server.epsilon(1e-6))
    # the clients added the noise: the masked stage told each its share σ·C/√(f − 1)
    for mtype, content in grid.seen:
        assert mtype != msg.MASK or set(content.array_records) == {msg.MASKED}


def test_too_many_dropouts_for_the_calibrated_noise_abort_before_anything_is_unmasked(tmp_path, write_scenario):
    grid = InProcessGrid(4, fail={(1, msg.MASK): {3}})
    _, rows = _run(write_scenario, tmp_path / "run", grid, partition={"num_clients": 4},
                   secagg={"enabled": True},                               # max_dropout 0.2: floor 4 of 4
                   privacy={"user_level": True, "noise_multiplier": 2.0, "clip": 1.0},
                   federation={"rounds": 2, "row_weight": "presence"})
    assert rows[0]["event"] == "secagg_abort" and "the 4 the noise shares were calibrated for" in rows[0]["message"]
    assert grid.calls.get(msg.UNMASK, 0) == 4          # round 2's unmask only: round 1 never asked for shares
    assert rows[0]["privacy"]["units"]["user"]["epsilon"] > 0                   # and still charged


@pytest.mark.parametrize("over, match", [
    ({"threshold": 0.5}, "threshold"),
    ({"neighbours": 3}, "even"),
    ({"bits": 63}, "bits"),
    ({"drop_mask": 1.5}, "drop_mask"),
])
def test_bad_secagg_settings_are_refused(over, match):
    with pytest.raises(ConfigError, match=match):
        compose.load(None, {"secagg.enabled": True, **{f"secagg.{k}": v for k, v in over.items()}})


def test_adaptive_clipping_sums_the_clip_bits_under_the_masks(tmp_path, write_scenario):
    from fedembed.privacy.user_dp import CLIP_BIT

    grid = InProcessGrid(4)
    _, rows = _run(write_scenario, tmp_path / "run", grid, partition={"num_clients": 4}, secagg={"enabled": True},
                   privacy={"user_level": True, "noise_multiplier": 1.0, "clip": 1.0, "adaptive_clip": True,
                            "clip_count_stddev": 2.0},
                   federation={"rounds": 2, "row_weight": "presence"})
    p1, p2 = (r["privacy"]["units"]["user"]["params"] for r in rows)
    assert p1["clip"] == 1.0 and p2["clip"] == p1["next_clip"] != 1.0   # C moved, from the noisy bit sum
    for mtype, content in grid.seen:                                    # no clip bit (no metric) in the clear
        if mtype == msg.MASK:
            assert not content.metric_records and CLIP_BIT not in str(dict(content.config_records))


@pytest.mark.parametrize("over, ring, bits", [
    ({}, 32, 24),                                                          # count weights capped at 255
    ({"federation.max_row_weight": 0}, 64, 40),                            # uncapped counts: wide range
    ({"partition.num_clients": 1000}, 32, 21),                             # capped counts, 1,000 clients
    ({"federation.row_weight": "presence"}, 32, 24),                       # deltas ±64, weights 0/1
    ({"federation.row_weight": "presence", "partition.num_clients": 1000}, 32, 21),
    ({"federation.row_weight": "presence", "privacy.user_level": True, "privacy.noise_multiplier": 1.0}, 32, 20),
])
def test_auto_quantization_fits_the_narrowest_ring_that_cannot_wrap(over, ring, bits):
    from fedembed.secagg.params import for_round
    from fedembed.secagg.quantize import levels

    cfg = compose.load(None, {"secagg.enabled": True, **over})
    p = for_round(cfg, cfg.partition.num_clients)
    assert (p.ring, p.bits) == (ring, bits)
    assert cfg.partition.num_clients * (levels(p.bits) + 1) < 2 ** (p.ring - 1)
