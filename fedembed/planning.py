"""`fedembed plan` and the verdict `fedembed simulate` prints before round 1 of a private run.

The arithmetic is fedembed/privacy/plan.py's; this app-level module gathers its inputs — the
scenario's resolved noise multiplier, the public counts, and a probe of a few users' first
updates at the run's starting tables through the family's own training — and prints the plan.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fedembed.config import Config
from fedembed.privacy.plan import Plan, Probe, predict

PROBE_USERS = 48


def probe(cfg: Config, prep, tables: dict[str, np.ndarray], users: int = PROBE_USERS) -> Probe:
    """A few users' first updates at `tables` (the family's training, clipped to the round's C
    under user-level DP): their norms, the rows they touch and how their shared rows add up."""
    from fedembed import models
    from fedembed.federation.server import learning_rates

    family = models.make(cfg)
    rng = np.random.default_rng([cfg.seed, 0x9B0B])
    active = prep.manifest.active
    chosen = rng.choice(active, size=min(users, len(active)), replace=False) if active else []
    lr_start, lr_end = learning_rates(cfg, 1)
    names = sorted(k for k in family.row_tables if k in tables)
    v, d = len(prep.vocab), sum(tables[k].shape[1] for k in names)      # a row: its vectors in every table
    total, sq, norm_sum, holders = np.zeros((v, d)), np.zeros(v), np.zeros(v), np.zeros(v)
    norms, touched = [], []
    clip = cfg.privacy.clip if cfg.privacy.user_level else math.inf
    for u in chosen:
        data = family.load_data(prep.shard_dir, int(u))
        seed = int(np.random.SeedSequence([cfg.seed, 1] if cfg.train.mode == "fedsgd"
                                          else [cfg.seed, 1, int(u)]).generate_state(1)[0])
        got = family.train(tables, data, prep.vocab.counts, lr_start, lr_end, seed, None, {})
        deltas = {k: np.asarray(got.tables[k], dtype=np.float64) - tables[k] for k in tables}
        if cfg.privacy.release_rows:     # the rows past K are zeroed before the clip, as the clients do
            from fedembed.privacy.release_rows import server_release
            deltas = server_release(deltas, cfg.privacy.release_rows, family.row_tables)
        norm = math.sqrt(sum(float(np.square(x).sum()) for x in deltas.values()))
        f = min(1.0, clip / norm) if norm > 0 else 1.0
        x = np.concatenate([deltas[k] for k in names], axis=1) * f
        rows = np.flatnonzero(np.abs(x).sum(axis=1) > 0)
        row_norms = np.linalg.norm(x[rows], axis=1)
        total[rows] += x[rows]
        sq[rows] += np.square(row_norms)
        norm_sum[rows] += row_norms
        holders[rows] += 1
        norms.append(norm)
        touched.append(sum(int((np.abs(a).sum(axis=1) > 0).sum()) for a in deltas.values()))
    shared = holders >= 2
    pairs = float(np.square(np.linalg.norm(total[shared], axis=1)).sum() - sq[shared].sum())
    spread = float(((holders[shared] - 1) * sq[shared]).sum())
    alignment = math.sqrt(max(pairs / spread, 0.0)) if spread > 0 else 1.0
    row_norm = np.divide(norm_sum, holders, out=np.zeros(v), where=holders > 0)
    return Probe(len(chosen), float(np.median(norms)) if norms else 0.0,
                 float(np.mean(touched)) if touched else 0.0, row_norm, min(alignment, 1.0), holders)


def noise_and_budget(cfg: Config) -> tuple[float, float, float, float, float | None]:
    """(z, ε, δ, the sampling rate, the run's noise in units of one round's) for the scenario."""
    from fedembed.privacy.accountant import Accountant

    if cfg.privacy.mechanism == "ftrl_tree":
        from fedembed.privacy import ftrl, tree_accounting as ta
        from fedembed.privacy.tree import final_noise_factor

        params, _, factor = ftrl.resolve(cfg)
        eps = ta.epsilon(params.noise_multiplier, factor, params.delta, params.accountant) \
            if params.noise_multiplier > 0 else math.inf
        return (params.noise_multiplier, eps, params.delta, params.sample_rate,
                final_noise_factor(cfg.federation.rounds, cfg.privacy.restart_every))
    from fedembed.privacy.params import resolve

    p = resolve(cfg)
    acc = Accountant(p.accountant)
    acc.step(p.noise_multiplier, p.headline_rate, cfg.federation.rounds)
    return p.noise_multiplier, acc.epsilon(p.delta), p.delta, p.sample_rate, None


def plan_for(cfg: Config, prep, tables: dict[str, np.ndarray], users: int = PROBE_USERS) -> Plan | None:
    """The run's plan (None unless user-level DP is on and the family has tables indexed by the row
    index: the prediction is per row by its public count, which a sentence encoder's adapter lacks)."""
    from fedembed import models

    if not cfg.privacy.user_level or not models.make(cfg).row_tables:
        return None
    z, eps, delta, q, run_factor = noise_and_budget(cfg)
    n = cfg.partition.num_clients
    dim = sum(tables[k].shape[1] for k in models.make(cfg).row_tables if k in tables)
    return predict(counts=prep.vocab.counts, population=n, cohort=q * n, rounds=cfg.federation.rounds,
                   dim=dim, clip=cfg.privacy.clip, noise_multiplier=z,
                   probe=probe(cfg, prep, tables, users), tables=1, epsilon=eps, delta=delta,
                   sample_rate=q, run_noise_factor=run_factor, released=cfg.privacy.release_rows,
                   model_dim=cfg.model.dim)


def run_plan(cfg: Config, out: Path, users: int = PROBE_USERS) -> dict[str, Any]:
    """`fedembed plan`: prepare the data (into `out`), probe, predict; returns the plan as a dict."""
    from fedembed import compose
    from fedembed.data.prepare import prepare

    out.mkdir(parents=True, exist_ok=True)
    prep = prepare(cfg, out, source=compose.data_source(cfg))
    tables, _ = compose.init_tables(cfg, out)(prep.vocab.words)
    plan = plan_for(cfg, prep, tables, users)
    if plan is None:
        from fedembed.errors import ConfigError
        if not cfg.privacy.user_level:
            raise ConfigError("fedembed plan predicts what user-level DP leaves of the signal: the scenario has "
                              "privacy.user_level = false")
        raise ConfigError(f"fedembed plan predicts the signal-to-noise of rows by their public counts: "
                          f"model.family = {cfg.model.family!r} has no table indexed by its rows")
    return plan.to_dict() | {"verdict": plan.verdict()}
