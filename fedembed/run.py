"""The app layer's run of a federation: data → composition → rounds → outputs, in that order.

`federate` is what the ServerApp (server/app.py) runs, under `fedembed simulate` and
`flwr run .` alike. It prepares the data (with the privacy attacks' planted records), lets the
composition root build the run's parts, hands them to the round loop, and only then produces
the run's outputs (export, evaluation, attacks, summary, plots: fedembed/report.py), so the
round loop never reaches up to them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fedembed import compose, report
from fedembed.attacks.privacy import evaluate as attacks
from fedembed.attacks.privacy.plant import plant
from fedembed import metrics
from fedembed.config import Config
from fedembed.data.prepare import prepare
from fedembed.errors import CheckpointError, FedembedError
from fedembed.federation.server import INIT_KEY, initial_state, run_rounds

log = logging.getLogger(__name__)


def federate(grid, cfg: Config, run_dir: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a validated scenario over a Flower Grid; returns report.json's content."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    compose.discover_vocabulary(grid, cfg, run_dir)      # vocab.mode = "discovered": the run's vocab.tsv
    prep = prepare(cfg, run_dir, plant=plant, source=compose.data_source(cfg))
    init = compose.init_tables(cfg, run_dir)
    state = initial_state(run_dir, prep, resume, init)
    if state.round and cfg.secagg.enabled and cfg.privacy.record.enabled:
        raise CheckpointError(f"{run_dir}: record-level DP under SecAgg+ keeps each client's accountant on its node "
                              f"only (its parameters depend on the client's sample count); a resumed run's nodes start "
                              f"afresh and their ε would restart at zero: start a new run instead of resuming")
    watched = attacks.observers(cfg)
    parts = compose.build_server(cfg, run_dir, prep, state, observers=watched)
    log.info("the update pipeline of scenario %r:\n%s", cfg.name, "\n".join(compose.describe(cfg)))
    if cfg.privacy.user_level and state.round == 0:   # what the noise will leave, before round 1
        from fedembed.planning import plan_for

        plan = plan_for(cfg, prep, state.tables)
        if plan is not None:
            log.info("%s", plan.verdict())
            state.extra["plan"] = plan.to_dict()
    outcome = run_rounds(grid, cfg, run_dir, prep, state, parts, progress)
    if outcome.rounds_applied == 0:
        raise FedembedError(f"{run_dir}: the run trained nothing — {_why_nothing(run_dir)}; no vectors are "
                            f"exported (its metrics.jsonl and checkpoint stay)")
    described = state.extra.get(INIT_KEY, {"init": "random"})
    start = report.Start(described, init(prep.vocab.words)[0] if described.get("init") != "random" else None)
    return report.finalize(cfg, run_dir, prep, outcome.tables, outcome.privacy,
                           views=compose.update_views(cfg, prep), watched=watched, start=start)


def _why_nothing(run_dir: Path) -> str:
    """Why no round's sum was applied, from the run's own log of its rounds."""
    rows = metrics.read(run_dir)
    stops = [r["message"] for r in rows if r.get("event") == "privacy_budget_stop"]
    aborts = [r for r in rows if r.get("event") == "secagg_abort"]
    if stops and not aborts:
        return stops[-1]
    if aborts:
        return (f"all {len(aborts)} round(s) aborted their secure aggregation (the last: "
                f"{aborts[-1].get('message', '?')})" + (f"; then {stops[-1]}" if stops else ""))
    return "no round ran (federation.rounds are all done already?)"
