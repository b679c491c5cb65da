"""privacy.release_rows (fedembed/privacy/release_rows.py): only the first K rows are clipped for,
noised and released; the others keep their start, whatever the noise."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fedembed import checkpoint, compose
from fedembed.errors import ConfigError
from fedembed.privacy.release_rows import ReleaseRows
from fedembed.privacy.user_dp import ClipUpdate
from fedembed.run import federate
from fedembed.updates import ClientUpdate, run_pipeline
from inprocess_grid import InProcessGrid


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(0, 12), clip=st.floats(0.01, 5.0))
def test_the_stage_zeroes_the_rows_past_k_before_the_clip(seed, k, clip):
    rng = np.random.default_rng(seed)
    tables = {"in_vectors": rng.normal(0, 1, (10, 4)).astype(np.float32),
              "other": rng.normal(0, 1, (3, 4)).astype(np.float32)}          # not a row table: untouched
    weights = {name: np.ones(len(t)) for name, t in tables.items()}
    stages = [ReleaseRows(k, ("in_vectors",)), ClipUpdate(clip, 0.1, send_weights=False)]
    got = run_pipeline(ClientUpdate({n: t.copy() for n, t in tables.items()}, dict(weights)), stages)
    assert not got.tables["in_vectors"][k:].any()
    kept = np.concatenate([tables["in_vectors"][:k].ravel(), tables["other"].ravel()]).astype(np.float64)
    norm = np.linalg.norm(kept)
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    # all of C goes to what is released: the kept rows scaled by C / their own norm (clip's margin aside)
    np.testing.assert_allclose(got.tables["in_vectors"][:k], tables["in_vectors"][:k] * scale, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got.tables["other"], tables["other"] * scale, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("mode", ["local", "fedsgd"])
def test_rows_past_k_keep_their_start_under_noise(tmp_path, write_scenario, mode):
    k = 25
    cfg = compose.load(write_scenario(
        partition={"name": "iid", "num_clients": 6}, secagg={"enabled": False},
        federation={"rounds": 2, "row_weight": "presence"},
        train={"mode": mode, "lr": 0.05}, simulation={"nodes": 2 if mode == "fedsgd" else 0},
        privacy={"user_level": True, "noise_multiplier": 1.0, "clip": 0.1, "delta": 1e-4,
                 "denominator": "public", "release_rows": k}))
    report = federate(InProcessGrid(2 if mode == "fedsgd" else 6), cfg, tmp_path / "run", progress=False)
    assert 0 < report["privacy"]["epsilon"] < float("inf")
    tables = checkpoint.load(tmp_path / "run").tables
    words = [w.split("\t")[0] for w in (tmp_path / "run" / "vocab.tsv").read_text().splitlines()]
    start, _ = compose.init_tables(cfg, tmp_path / "run")(words)
    for name in ("in_vectors", "out_vectors"):
        np.testing.assert_array_equal(tables[name][k:], start[name][k:])        # never noised
        assert np.abs(tables[name][:k] - start[name][:k]).max() > 0            # trained (and noised)


def test_release_rows_needs_user_level_dp():
    with pytest.raises(ConfigError, match="user_level"):
        compose.load(None, {"privacy.release_rows": 10})
    with pytest.raises(ConfigError, match="release_rows"):
        compose.load(None, {"privacy.release_rows": -1})
