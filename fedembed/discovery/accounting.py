"""The discovery's rounds in the run's privacy ledger, before training's: one budget for both.

Each discovery round released one Gaussian mechanism of sensitivity 1 on the user unit, with
the noise actually present (z·√(m'/m) under SecAgg+ with dropouts) and the rounds' Poisson
rate (credited to the headline ε only against the threat model's observer: `headline_rate`).
`prime` charges them to the ledger the privacy session is built from (as round 0, also
a `vocab_discovery` event line in metrics.jsonl), so
the same accountant composes them with every training round and the report's
`privacy.epsilon` covers both; with `privacy.target_epsilon`, training's noise multiplier is
the one that spends exactly what the discovery left (fedembed.privacy.accountant
.remaining_noise_multiplier), stored where the session reads a resumed run's z. A checkpoint
that already holds them (a resumed run) is left alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fedembed.discovery.params import headline_rate
from fedembed.discovery.protocol import DiscoveryState
from fedembed.discovery.rounds import state_path

MARK = "vocab_discovery"       # in the checkpoint's extra: the discovery is in its ledger


def history(run_dir: Path) -> list[tuple[float, float, int]]:
    """(z present, q, 1) of every discovery round that released a sum."""
    import json

    saved = json.loads(state_path(run_dir).read_text(encoding="utf-8"))
    return [(z, q, 1) for z, q in DiscoveryState.from_dict(saved["state"]).history()]


def prime(cfg, extra: dict[str, Any], run_dir: Path) -> None:
    """Charge the discovery to the ledger in `extra` (and set training's z under a target ε)."""
    if cfg.vocab.mode != "discovered" or MARK in extra:
        return
    from fedembed.privacy import distributed
    from fedembed.privacy.accountant import Accountant, remaining_noise_multiplier
    from fedembed.privacy.ledger import USER, Ledger
    from fedembed.privacy.params import UNTRUSTED, delta, threat_model
    from fedembed.privacy.session import LEDGER_KEY, MECHANISM_KEY, RELEASED
    from fedembed.privacy.user_dp import CentralGaussian

    spent = history(run_dir)
    d, kind, threat = delta(cfg), cfg.privacy.accountant, threat_model(cfg)
    ledger = Ledger.from_dict(extra.get(LEDGER_KEY))
    # the unit as the privacy session opens it (the headline against the threat model, the released
    # tables' view beside it), so the session finds it open and goes on composing
    views = {RELEASED: Accountant(kind)} if threat == UNTRUSTED else {}
    ledger.open(USER, distributed.MECHANISM if cfg.secagg.enabled else CentralGaussian.mechanism, d, Accountant(kind),
                threat, views)
    for i, (z, q, _) in enumerate(spent):
        ledger.spend(USER, z, headline_rate(cfg, q), {"discovery_round": i, "noise_multiplier": z, "sample_rate": q},
                     views={RELEASED: (z, q)})
    entry = ledger.close_round(0)
    extra[LEDGER_KEY] = ledger.to_dict()
    if cfg.privacy.target_epsilon > 0 and MECHANISM_KEY not in extra:
        z = remaining_noise_multiplier(headline_history(cfg, spent), training_rate(cfg), cfg.federation.rounds,
                                       cfg.privacy.target_epsilon, d, kind)
        extra[MECHANISM_KEY] = {"noise_multiplier": z}
    extra[MARK] = {"rounds": len(spent), "epsilon": entry["units"][USER]["epsilon"] if entry else 0.0}
    from fedembed import metrics

    metrics.append(run_dir, {"round": 0, "event": "vocab_discovery", "rounds": len(spent), "privacy": entry})


def headline_history(cfg, spent: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    return [(z, headline_rate(cfg, q), n) for z, q, n in spent]


def training_rate(cfg) -> float:
    """Training's rate as its rounds are charged to the headline."""
    from fedembed.privacy.params import sample_rate

    return headline_rate(cfg, sample_rate(cfg))


def planned_training_noise(cfg) -> float | None:
    """Training's z under privacy.target_epsilon once every planned discovery round has run (for
    `--dry-run`; a run uses the rounds that did run): None without a target."""
    if cfg.vocab.mode != "discovered" or cfg.privacy.target_epsilon <= 0:
        return None
    from fedembed.discovery.params import resolve
    from fedembed.privacy.accountant import remaining_noise_multiplier
    from fedembed.privacy.params import delta

    p = resolve(cfg)
    planned = headline_history(cfg, [(z, p.sample_rate, 1) for z in p.noise_multipliers])
    return remaining_noise_multiplier(planned, training_rate(cfg), cfg.federation.rounds, cfg.privacy.target_epsilon,
                                      delta(cfg), cfg.privacy.accountant)
