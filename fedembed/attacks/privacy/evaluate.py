"""Run the privacy attacks a scenario turns on; their figures go in report.json's `privacy_attacks`.

Called by fedembed/report.py, at the end of a run. Next to the attacks' own figures, `empirical_epsilon` puts
the strongest empirical ε lower bound beside the ε the ledger claims (report["privacy"]).
A game counts toward that comparison only when one trial changes at most one unit of the
ledger's privacy: a planted canary repeated R times is R records, so under record-level
DP the canary game is a group of R and is shown but not compared.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from fedembed.attacks.privacy import PRIVACY_ATTACKS, AttackContext, FirstRound, UpdateViews
from fedembed.attacks.privacy.params import enabled
from fedembed.observe import Observation

log = logging.getLogger(__name__)


def _register() -> None:
    from fedembed.attacks.privacy import canary, membership, vocab_inference  # noqa: F401  (registration)


def empirical_summary(figures: dict[str, Any], details: dict[str, Any],
                      privacy: dict[str, Any], confidence: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The strongest comparable ε lower bound next to the ledger's ε (figures), and per game (details)."""
    unit = privacy.get("unit")
    games: dict[str, dict[str, Any]] = {}
    if "canary" in figures:
        group = details["canary"]["repetitions"] if unit == "record" else 1
        games["canary"] = {"epsilon_lb": figures["canary"]["epsilon_lb"], "group_size": group}
    if "membership" in figures:
        games["membership"] = {"epsilon_lb": figures["membership"]["epsilon_lb"], "group_size": 1}
    comparable = [g["epsilon_lb"] for g in games.values() if g["group_size"] == 1]
    lb = max(comparable) if comparable else None
    claimed = privacy.get("epsilon")   # None: not private (ε = ∞)
    return ({"epsilon_lb": lb, "ledger_epsilon": claimed,
             "within_ledger": None if lb is None else (claimed is None or lb <= claimed)},
            {"ledger_unit": unit, "delta": privacy.get("delta"), "confidence": confidence, "games": games})


def observers(cfg) -> list[FirstRound]:
    """The observers the enabled attacks need during the run (vocabulary inference: the target's
    round-1 reply as the server received it)."""
    if "vocab_inference" not in enabled(cfg):
        return []
    return [FirstRound({cfg.privacy_attacks.target_client})]


def run_attacks(cfg, run_dir, prep, tables, privacy: dict[str, Any], views: UpdateViews | None = None,
                watched: list[FirstRound] = ()) -> dict[str, Any]:
    """report.json's `privacy_attacks` (the attacks' success figures, which the harness plots) and
    `privacy_attacks_details` (counts, settings, per-canary exposures); {} when no attack is on.
    `watched`: the observers `observers` returned, after the run."""
    names = enabled(cfg)
    if not names:
        return {}
    _register()
    seen: dict[tuple[int, int], Observation] = {}
    for w in watched:
        seen.update(w.seen)
    ctx = AttackContext(cfg, run_dir, prep, tables, privacy, views, seen)
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        out = PRIVACY_ATTACKS.get(name)(ctx)
        figures[name], details[name] = out["figures"], out["details"]
        details[name]["seconds"] = time.perf_counter() - t0
        log.info("privacy attack %s done in %.1fs", name, details[name]["seconds"])
    if "canary" in figures or "membership" in figures:
        figures["empirical_epsilon"], details["empirical_epsilon"] = empirical_summary(
            figures, details, privacy, cfg.privacy_attacks.confidence)
    return {"privacy_attacks": figures, "privacy_attacks_details": details}
