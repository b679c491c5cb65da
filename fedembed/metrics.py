"""metrics.jsonl: one JSON object per round, append-only, truncated back on resume."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"


def append(run_dir: Path, record: dict[str, Any]) -> None:
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()


def read(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a kill: everything after it is lost with it
    return out


def truncate(run_dir: Path, last_round: int) -> None:
    """Keep only rounds ≤ last_round (the checkpointed ones), dropping a round in flight."""
    kept = [r for r in read(run_dir) if r.get("round", 0) <= last_round]
    path = Path(run_dir) / METRICS
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept), encoding="utf-8")
    tmp.replace(path)
