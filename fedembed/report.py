"""End of a run: export the global word vectors, evaluate them next to the gensim baseline.

Called by the app layer (fedembed/run.py) once the round loop has returned, never from
inside it: export, baseline, attacks, the summary and the plots are the run's outputs.
"""
from __future__ import annotations

import json
import logging
import time
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
from fedembed.eval.baseline import train_gensim
from fedembed.eval.neighbours import neighbour_overlap
from fedembed.eval.wordsim import evaluate
from fedembed.export import export, keyed_vectors
from fedembed.privacy.ledger import Ledger

log = logging.getLogger(__name__)
REPORT = "report.json"


@dataclass
class Start:
    """What the global tables started from (model.init), for the report."""
    description: dict[str, Any]
    tables: dict[str, np.ndarray] | None    # the warm start's tables; None for a random start


def ratios(quality: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """Federated ÷ centralized for each headline figure (None where undefined)."""
    out: dict[str, float | None] = {}
    for name, key in (("wordsim353", "spearman"), ("simlex999", "spearman"), ("analogy", "accuracy")):
        f, b = quality.get(name, {}).get(key), baseline.get(name, {}).get(key)
        out[f"{name}.{key}"] = f / b if f is not None and b not in (None, 0) else None
    return out


def finalize(cfg: Config, run_dir: Path, prep, tables: dict[str, np.ndarray],
             privacy: dict[str, Any] | None = None, *, views: UpdateViews | None = None,
             watched: list[FirstRound] = (), start: Start | None = None) -> dict[str, Any]:
    """`privacy` is the ledger's summary (fedembed.privacy.ledger.Ledger.summary); without one
    the report says the run was not private, so `privacy.*` keys are always there. `views` and
    `watched`: what the privacy attacks get to see of the run (fedembed/attacks/privacy).
    `start`: a warm start's description and tables (model.init): the report shows it alone
    (`baseline.public_only`), so every run says what the private data added."""
    vectors = models.make(cfg).word_vectors(tables)
    words = prep.vocab.words
    export(words, vectors, run_dir / "embeddings.txt", "word2vec-text")
    export(words, vectors, run_dir / "embeddings.bin", "word2vec-binary")
    quality = evaluate(keyed_vectors(words, vectors))
    report: dict[str, Any] = {
        "run": {"name": cfg.name, "rounds": cfg.federation.rounds, "clients": cfg.partition.num_clients,
                "partition": cfg.partition.name, "family": cfg.model.family, "dim": cfg.model.dim,
                "vocab_size": len(words),
                "tokens": None if cfg.data.format == DEVICES else int(sum(prep.manifest.tokens)),  # on the devices
                "skipped_clients": prep.manifest.skipped},
        "quality": quality,
        "privacy": privacy if privacy is not None else Ledger().summary(),
    }
    report["run"]["partition_stats"] = partition_stats.for_report(prep.shard_dir)  # sizes, labels per client
    hist = [r for r in metrics.read(run_dir) if "event" not in r]  # rounds only, not e.g. a budget stop
    if hist:
        report["run"]["bytes_up"] = int(sum(r["bytes_up"] for r in hist))
        report["run"]["bytes_down"] = int(sum(r["bytes_down"] for r in hist))
        report["run"]["seconds"] = float(sum(r["seconds"] for r in hist))
        report["run"]["final_train_loss"] = hist[-1]["train_loss"]
    if cfg.eval.baseline:
        t0 = time.perf_counter()
        kv = train_gensim(cfg, prep.vocab, prep.shard_dir, prep.manifest.active)
        base = evaluate(kv)
        base["seconds"] = time.perf_counter() - t0
        report["baseline"] = {"gensim": base}
        report["ratio_to_baseline"] = ratios(quality, base)
        # how much of the private data's structure the model learned (the 10 nearest neighbours
        # of the most frequent words, against gensim on the same data): informative where the
        # word lists are noisy
        quality["neighbour_overlap"] = neighbour_overlap(words, vectors, kv, prep.vocab.counts)
    if start is not None:
        report["run"]["init"] = start.description
        if start.tables is not None:
            only = evaluate(keyed_vectors(words, models.make(cfg).word_vectors(start.tables)))
            if cfg.eval.baseline:
                only["neighbour_overlap"] = neighbour_overlap(words, models.make(cfg).word_vectors(start.tables),
                                                              kv, prep.vocab.counts)
            report.setdefault("baseline", {})["public_only"] = only
    report.update(run_attacks(cfg, run_dir, prep, tables, report["privacy"], views, watched))  # [privacy_attacks]
    report.update(report_sections(cfg, words, vectors, kv if cfg.eval.baseline else None))  # [adversary], rule
    tmp = run_dir / (REPORT + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(run_dir / REPORT)
    summary.write(run_dir, report)  # summary.csv
    plots.write(run_dir, report)
    log.info("report written to %s", run_dir / REPORT)
    return report
