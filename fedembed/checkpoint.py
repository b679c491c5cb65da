"""Round checkpoints: global tables, round, RNG seed material and metrics, written atomically.

A checkpoint is one `.npz` replaced with `os.replace`, so a run killed mid-write keeps the
previous round's checkpoint intact; `--resume` loses at most the round in flight.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedembed.errors import CheckpointError

CHECKPOINT = "checkpoint.npz"


@dataclass
class State:
    round: int
    tables: dict[str, np.ndarray]
    vocab_fingerprint: str
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the privacy ledger, client state


def save(run_dir: Path, state: State) -> None:
    path = Path(run_dir) / CHECKPOINT
    tmp = path.with_name(path.name + ".tmp")
    meta = {"round": state.round, "vocab_fingerprint": state.vocab_fingerprint, "extra": state.extra}
    with open(tmp, "wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                 **{f"table/{k}": v for k, v in state.tables.items()})
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(run_dir: Path) -> State:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir} (expected {path.name})")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            tables = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("table/")}
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable: {exc}") from exc
    return State(meta["round"], tables, meta["vocab_fingerprint"], meta.get("extra", {}))


def exists(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT).is_file()
