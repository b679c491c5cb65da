"""End of a run: the family's exports, quality and centralized baselines (its `report` hook),
then the run's facts, privacy, attacks, summary.csv and plots.

Called by the app layer (fedembed/run.py) once the round loop has returned, never from
inside it: export, baseline, attacks, the summary and the plots are the run's outputs.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedembed import metrics, models, plots, summary
from fedembed.attacks.adversaries.report import report_sections
from fedembed.attacks.privacy import FirstRound, UpdateViews
from fedembed.attacks.privacy.evaluate import run_attacks
from fedembed.config import DEVICES, Config
from fedembed.data.partition import stats as partition_stats
from fedembed.models import RunView
from fedembed.privacy.ledger import Ledger

log = logging.getLogger(__name__)
REPORT = "report.json"


@dataclass
class Start:
    """What the global tables started from (model.init), for the report."""
    description: dict[str, Any]
    tables: dict[str, np.ndarray] | None    # the warm start's tables; None for a random start


def finalize(cfg: Config, run_dir: Path, prep, tables: dict[str, np.ndarray],
             privacy: dict[str, Any] | None = None, *, views: UpdateViews | None = None,
             watched: list[FirstRound] = (), start: Start | None = None) -> dict[str, Any]:
    """`privacy` is the ledger's summary (fedembed.privacy.ledger.Ledger.summary); without one
    the report says the run was not private, so `privacy.*` keys are always there. `views` and
    `watched`: what the privacy attacks get to see of the run (fedembed/attacks/privacy).
    `start`: a warm start's description and tables (model.init): the report shows it alone
    (`baseline.public_only`), so every run says what the private data added."""
    family = models.make(cfg)
    words = prep.vocab.words
    run = RunView(cfg, run_dir, prep.vocab, tables, prep.shard_dir, prep.manifest.active)
    fam = family.report(run)   # the family's files, quality and centralized baselines
    report: dict[str, Any] = {
        "run": {"name": cfg.name, "rounds": cfg.federation.rounds, "clients": cfg.partition.num_clients,
                "partition": cfg.partition.name, "family": cfg.model.family, "dim": cfg.model.dim,
                "vocab_size": len(words),
                "tokens": None if cfg.data.format == DEVICES else int(sum(prep.manifest.tokens)),  # on the devices
                "skipped_clients": prep.manifest.skipped},
        "quality": fam.quality,
        "privacy": privacy if privacy is not None else Ledger().summary(),
    }
    if fam.headline:
        report["headline"] = fam.headline
    report["run"]["partition_stats"] = partition_stats.for_report(prep.shard_dir)  # sizes, labels per client
    hist = [r for r in metrics.read(run_dir) if "event" not in r]  # rounds only, not e.g. a budget stop
    if hist:
        report["run"]["bytes_up"] = int(sum(r["bytes_up"] for r in hist))
        report["run"]["bytes_down"] = int(sum(r["bytes_down"] for r in hist))
        report["run"]["seconds"] = float(sum(r["seconds"] for r in hist))
        report["run"]["final_train_loss"] = hist[-1]["train_loss"]
    if fam.baselines:
        report["baseline"] = fam.baselines
        report["ratio_to_baseline"] = fam.ratios
    if start is not None:
        report["run"]["init"] = start.description
        if start.tables is not None:       # the warm start alone, on the same lists
            only = family.evaluate(RunView(cfg, run_dir, prep.vocab, start.tables, prep.shard_dir,
                                           prep.manifest.active))
            if fam.reference is not None:
                from fedembed.eval.neighbours import neighbour_overlap

                only["neighbour_overlap"] = neighbour_overlap(words, family.word_vectors(start.tables),
                                                              fam.reference, prep.vocab.counts)
            report.setdefault("baseline", {})["public_only"] = only
    report.update(run_attacks(cfg, run_dir, prep, tables, report["privacy"], views, watched))  # [privacy_attacks]
    report.update(report_sections(cfg, words, family.word_vectors(tables, words), fam.reference))  # [adversary], rule
    tmp = run_dir / (REPORT + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(run_dir / REPORT)
    summary.write(run_dir, report)  # summary.csv
    plots.write(run_dir, report)
    log.info("report written to %s", run_dir / REPORT)
    return report
