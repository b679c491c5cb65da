"""What a partition looks like: sizes, label histograms per client, vocabulary overlap.

`Collector` rides along the two corpus passes of `text_shards.write_shards` (it feeds the
partitioner's and its own labeler's first pass, then counts every document's client and
label), and `write` prints a table and saves `data/partition_stats.json`, which the report
copies under `run.partition_stats`. The same label (`partition.label`) is histogrammed
whatever the partitioner, so an IID and a Dirichlet run can be compared.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from fedembed.data.corpus import Document
from fedembed.data.partition import labels as labels_mod
from fedembed.data.shards import Manifest, load_shard

log = logging.getLogger(__name__)
STATS = "partition_stats.json"
_OVERLAP_CLIENTS = 64     # pairwise vocabulary overlap over at most this many clients
_PER_CLIENT_IN_REPORT = 100
_PRINT_ROWS = 20


class Collector:
    def __init__(self, cfg, partitioner) -> None:
        self.cfg, self.part = cfg, partitioner
        own = partitioner.labeler
        self.labeler = own if own is not None and cfg.partition.label == _kind(own) else labels_mod.make(cfg)
        self._shared = self.labeler is own
        self.needs_pass = self.labeler.needs_pass
        k = cfg.partition.num_clients
        self.docs = np.zeros(k, dtype=np.int64)
        self.hist: list[dict[int, int]] = [defaultdict(int) for _ in range(k)]

    def observe(self, i: int, doc: Document) -> None:
        """First pass: the labeler's (unless the partitioner feeds its own) and the partitioner's."""
        if not self._shared:
            self.labeler.observe(i, doc)
        self.part.observe(i, doc)

    def add(self, i: int, doc: Document, client: int, kept_tokens: int) -> None:
        if kept_tokens == 0:
            return  # not written to the shard
        self.docs[client] += 1
        self.hist[client][self.labeler.label(i, doc)] += 1

    def stats(self, manifest: Manifest, shard_dir: Path) -> dict[str, Any]:
        names = self.labeler.names
        k = manifest.num_clients
        tokens = np.array(manifest.tokens, dtype=float)
        hist = np.zeros((k, len(names)), dtype=np.int64)
        for c, h in enumerate(self.hist):
            for j, n in h.items():
                hist[c, j] = n
        return {
            "partitioner": self.cfg.partition.name,
            "label": self.cfg.partition.label,
            "labels": names,
            "summary": {**size_summary(tokens), **label_summary(hist),
                        "vocab_overlap": vocab_overlap(shard_dir, manifest.active)},
            "clients": [{"client": c, "tokens": int(manifest.tokens[c]), "documents": int(self.docs[c]),
                         "units": int(manifest.units[c]),
                         "labels": {names[j]: int(n) for j, n in enumerate(hist[c]) if n}}
                        for c in range(k)],
        }

    def write(self, manifest: Manifest, shard_dir: Path) -> dict[str, Any]:
        stats = self.stats(manifest, shard_dir)
        tmp = Path(shard_dir) / (STATS + ".tmp")
        tmp.write_text(json.dumps(stats, indent=1), encoding="utf-8")
        tmp.replace(Path(shard_dir) / STATS)
        for line in table(stats):
            log.info("%s", line)
        return stats


def _kind(labeler: labels_mod.Labeler) -> str:
    return {labels_mod.TopicLabeler: "topic", labels_mod.UnitLabeler: "unit", labels_mod.FieldLabeler: "field",
            labels_mod.SourceLabeler: "source"}[type(labeler)]


def size_summary(tokens: np.ndarray) -> dict[str, float]:
    """Token counts per client: spread (coefficient of variation) and inequality (Gini)."""
    t = np.sort(tokens.astype(float))
    n, total = len(t), t.sum()
    gini = float((2 * np.arange(1, n + 1) - n - 1) @ t / (n * total)) if total else 0.0
    return {"tokens_min": int(t[0]), "tokens_median": float(np.median(t)), "tokens_max": int(t[-1]),
            "tokens_cv": float(t.std() / t.mean()) if total else 0.0, "tokens_gini": gini}


def label_summary(hist: np.ndarray) -> dict[str, float]:
    """How far clients' label mixes are from the whole corpus's: mean total-variation distance
    (0 = every client has the global mix) and the mean share of a client's top label."""
    rows = hist.sum(axis=1)
    keep = rows > 0
    if not keep.any() or hist.shape[1] == 0:
        return {"label_tv_mean": 0.0, "top_label_share_mean": 0.0, "labels_per_client_mean": 0.0}
    p = hist[keep] / rows[keep, None]
    g = hist.sum(axis=0) / hist.sum()
    return {"label_tv_mean": float(0.5 * np.abs(p - g).sum(axis=1).mean()),
            "top_label_share_mean": float(p.max(axis=1).mean()),
            "labels_per_client_mean": float((hist[keep] > 0).sum(axis=1).mean())}


def vocab_overlap(shard_dir: Path, clients: list[int]) -> float | None:
    """Mean pairwise Jaccard similarity of clients' vocabularies (distinct word ids), over at
    most _OVERLAP_CLIENTS clients spread evenly across the federation."""
    if len(clients) < 2:
        return None
    pick = [clients[int(j)] for j in np.linspace(0, len(clients) - 1, min(len(clients), _OVERLAP_CLIENTS))]
    sets = [np.unique(load_shard(shard_dir, c)[0]) for c in dict.fromkeys(pick)]
    v = int(max((s.max() for s in sets if len(s)), default=0)) + 1
    m = np.zeros((len(sets), v), dtype=np.float32)
    for r, s in enumerate(sets):
        m[r, s] = 1.0
    inter = m @ m.T
    size = m.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    iu = np.triu_indices(len(sets), 1)
    return float(np.mean(np.divide(inter[iu], union[iu], out=np.zeros(len(iu[0])), where=union[iu] > 0)))


def table(stats: dict[str, Any]) -> list[str]:
    """Lines to print: one per client (the first _PRINT_ROWS), then the summary."""
    s = stats["summary"]
    lines = [f"partition {stats['partitioner']}: label histogram by {stats['label']}",
             f"{'client':>6} {'tokens':>9} {'docs':>6}  labels"]
    for row in stats["clients"][:_PRINT_ROWS]:
        top = sorted(row["labels"].items(), key=lambda kv: -kv[1])[:4]
        more = len(row["labels"]) - len(top)
        lines.append(f"{row['client']:>6} {row['tokens']:>9} {row['documents']:>6}  "
                     + ", ".join(f"{k}:{v}" for k, v in top) + (f", +{more} more" if more > 0 else ""))
    if len(stats["clients"]) > _PRINT_ROWS:
        lines.append(f"   … {len(stats['clients']) - _PRINT_ROWS} more clients in data/{STATS}")
    overlap = s["vocab_overlap"]
    lines.append(f"tokens min/median/max {s['tokens_min']}/{s['tokens_median']:.0f}/{s['tokens_max']} "
                 f"(cv {s['tokens_cv']:.2f}, gini {s['tokens_gini']:.2f}); label TV from global "
                 f"{s['label_tv_mean']:.3f}, top-label share {s['top_label_share_mean']:.2f}; vocabulary "
                 f"overlap (Jaccard) {'n/a' if overlap is None else f'{overlap:.3f}'}")
    return lines


def load(shard_dir: Path) -> dict[str, Any] | None:
    path = Path(shard_dir) / STATS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def for_report(shard_dir: Path) -> dict[str, Any] | None:
    """The statistics for report.json: per-client rows only while the federation is small."""
    stats = load(shard_dir)
    if stats is not None and len(stats["clients"]) > _PER_CLIENT_IN_REPORT:
        stats = {**stats, "clients": f"{len(stats['clients'])} clients: see data/{STATS}"}
    return stats
