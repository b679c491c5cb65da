"""Server optimisers: sgd as before bit for bit, momentum / nesterov / adam against hand-written references,
lazy rows, state round trips through an .npz, the registry and check(cfg)."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from fedembed import config as config_mod
from fedembed.errors import ConfigError
from fedembed.server_opt import SERVER_OPTIMIZERS, check, make
from fedembed.server_opt.adam import ServerAdam
from fedembed.server_opt.momentum import ServerMomentum, ServerNesterov
from fedembed.server_opt.sgd import ServerSGD

_f32 = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=50, deadline=None)
@given(t=arrays(np.float32, (5, 3), elements=_f32), d=arrays(np.float32, (5, 3), elements=_f32),
       lr=st.floats(1e-3, 100.0))
def test_sgd_is_the_old_update_bit_for_bit(t, d, lr):
    ours, old = {"in": t.copy()}, {"in": t.copy()}
    ServerSGD(lr).step(ours, {"in": d})
    old["in"] += lr * d                       # fedembed/federation/server.py's line
    np.testing.assert_array_equal(ours["in"], old["in"])
    assert ours["in"].dtype == np.float32


def _deltas(rng: np.random.Generator, steps: int, zero_rows=()) -> list[np.ndarray]:
    out = []
    for i in range(steps):
        d = rng.normal(size=(4, 2))
        for r in zero_rows:
            if (i + r) % 2:
                d[r] = 0.0
        out.append(d)
    return out


def _reference_momentum(x0, deltas, lr, beta, nesterov, lazy):
    """Coordinate by coordinate, in plain Python floats."""
    x, v = x0.astype(np.float64).tolist(), [[0.0] * len(x0[0]) for _ in x0]
    for d in deltas:
        for i, row in enumerate(d):
            if lazy and all(c == 0 for c in row):
                continue
            for j, g in enumerate(row):
                v[i][j] = beta * v[i][j] + g
                x[i][j] += lr * ((beta * v[i][j] + g) if nesterov else v[i][j])
    return np.array(x)


def _reference_adam(x0, deltas, lr, b1, b2, tau, lazy, bias_correction):
    x = x0.astype(np.float64).tolist()
    m = [[0.0] * len(x0[0]) for _ in x0]
    v = [[tau * tau] * len(x0[0]) for _ in x0]
    for t, d in enumerate(deltas, start=1):
        eta = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) if bias_correction else lr
        for i, row in enumerate(d):
            if lazy and all(c == 0 for c in row):
                continue
            for j, g in enumerate(row):
                m[i][j] = b1 * m[i][j] + (1 - b1) * g
                v[i][j] = b2 * v[i][j] + (1 - b2) * g * g
                x[i][j] += eta * m[i][j] / (math.sqrt(v[i][j]) + tau)
    return np.array(x)


@pytest.mark.parametrize("lazy", [True, False])
@pytest.mark.parametrize("cls, nesterov", [(ServerMomentum, False), (ServerNesterov, True)])
def test_momentum_matches_the_reference(cls, nesterov, lazy):
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(4, 2))
    deltas = _deltas(rng, 6, zero_rows=(1, 3))
    tables = {"t": x0.copy()}
    opt = cls(lr=0.7, beta=0.9, lazy=lazy)
    for d in deltas:
        opt.step(tables, {"t": d})
    np.testing.assert_allclose(tables["t"], _reference_momentum(x0, deltas, 0.7, 0.9, nesterov, lazy),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lazy", [True, False])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_adam_matches_the_reference(lazy, bias_correction):
    rng = np.random.default_rng(1)
    x0 = rng.normal(size=(4, 2))
    deltas = _deltas(rng, 6, zero_rows=(0, 2))
    tables = {"t": x0.copy()}
    opt = ServerAdam(lr=0.05, beta1=0.9, beta2=0.99, tau=1e-3, lazy=lazy, bias_correction=bias_correction)
    for d in deltas:
        opt.step(tables, {"t": d})
    np.testing.assert_allclose(tables["t"], _reference_adam(x0, deltas, 0.05, 0.9, 0.99, 1e-3, lazy,
                                                            bias_correction), rtol=1e-12, atol=1e-12)


def test_lazy_rows_stay_still_dense_rows_coast():
    d1 = np.array([[1.0, 1.0], [1.0, -1.0]])
    d2 = np.array([[0.5, 0.5], [0.0, 0.0]])     # row 1 untouched in round 2
    for cls in (ServerMomentum, ServerAdam):
        lazy, dense = {"t": np.zeros((2, 2))}, {"t": np.zeros((2, 2))}
        a, b = cls(lazy=True), cls(lazy=False)
        a.step(lazy, {"t": d1})
        b.step(dense, {"t": d1})
        row1 = lazy["t"][1].copy()
        a.step(lazy, {"t": d2})
        b.step(dense, {"t": d2})
        np.testing.assert_array_equal(lazy["t"][1], row1)                    # lazy: not moved
        assert not np.array_equal(dense["t"][1], row1)                       # dense: coasts on its moments
        np.testing.assert_array_equal(lazy["t"][0], dense["t"][0])           # touched rows: the same


def test_float32_tables_stay_float32():
    for name in SERVER_OPTIMIZERS:
        opt = make(config_mod.load(None, {"federation.server_optimizer": name}))
        tables = {"t": np.ones((3, 2), dtype=np.float32)}
        opt.step(tables, {"t": np.full((3, 2), 0.5, dtype=np.float32)})
        assert tables["t"].dtype == np.float32 and np.all(tables["t"] > 1)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
def test_state_round_trips_through_an_npz_and_continues_identically(name):
    cfg = config_mod.load(None, {"federation.server_optimizer": name, "federation.server_lr": 0.3})
    rng = np.random.default_rng(2)
    x0 = {"in": rng.normal(size=(5, 3)).astype(np.float32), "out": rng.normal(size=(5, 3)).astype(np.float32)}
    deltas = [{k: rng.normal(size=(5, 3)).astype(np.float32) for k in x0} for _ in range(5)]
    for d in deltas:
        d["in"][2] = 0.0
    straight, tables = make(cfg), {k: v.copy() for k, v in x0.items()}
    for d in deltas:
        straight.step(tables, d)
    first, resumed_tables = make(cfg), {k: v.copy() for k, v in x0.items()}
    for d in deltas[:2]:
        first.step(resumed_tables, d)
    buf = io.BytesIO()
    np.savez(buf, **{f"server_opt/{k}": v for k, v in first.state_arrays().items()})
    buf.seek(0)
    with np.load(buf) as z:
        saved = {k.split("/", 1)[1]: z[k] for k in z.files}
    resumed = make(cfg)
    resumed.load_state_arrays(saved)
    for d in deltas[2:]:
        resumed.step(resumed_tables, d)
    for k in x0:
        np.testing.assert_array_equal(resumed_tables[k], tables[k])
    assert (name == "sgd") == (not first.state_arrays())


def test_make_reads_the_scenario():
    opt = make(config_mod.load(None, {"federation.server_optimizer": "adam", "federation.server_lr": 0.01,
                                      "federation.server_momentum": 0.8, "federation.server_beta2": 0.95,
                                      "federation.server_tau": 1e-2}))
    assert (opt.lr, opt.beta1, opt.beta2, opt.tau, opt.lazy, opt.bias_correction) == (0.01, 0.8, 0.95, 1e-2,
                                                                                       True, False)
    assert make(config_mod.load(None, {"federation.server_optimizer": "nesterov"})).nesterov


@pytest.mark.parametrize("key, value", [("server_optimizer", "yogi"), ("server_momentum", 1.0),
                                        ("server_momentum", -0.1), ("server_beta2", 1.5), ("server_tau", 0.0)])
def test_check_refuses_with_one_line_naming_the_key(key, value):
    cfg = config_mod.load(None, {f"federation.{key}": value})
    with pytest.raises(ConfigError, match=f"federation.{key}") as err:
        check(cfg)
    assert "\n" not in str(err.value)
    check(config_mod.load(None, {}))
