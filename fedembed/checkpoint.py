"""Round checkpoints: global tables, round, RNG seed material and metrics, written atomically.

A checkpoint is one `.npz` replaced with `os.replace`, so a run killed mid-write keeps the
previous round's checkpoint intact; `--resume` loses at most the round in flight.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from tokenize import TokenError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedembed.errors import CheckpointError, one_line

CHECKPOINT = "checkpoint.npz"


@dataclass
class State:
    round: int
    tables: dict[str, np.ndarray]
    vocab_fingerprint: str
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the privacy ledger, client state
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. the server optimiser's moments


def save(run_dir: Path, state: State) -> None:
    path = Path(run_dir) / CHECKPOINT
    tmp = path.with_name(path.name + ".tmp")
    meta = {"round": state.round, "vocab_fingerprint": state.vocab_fingerprint, "extra": state.extra}
    with open(tmp, "wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                 **{f"table/{k}": v for k, v in state.tables.items()},
                 **{f"state/{k}": v for k, v in state.arrays.items()})
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(run_dir: Path) -> State:
    """The run's checkpoint; a missing, truncated or damaged one is a `CheckpointError` naming it."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir} (expected {path.name})")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CheckpointError(f"checkpoint {path} is unreadable: not an .npz archive")
        with z:
            if "__meta__" not in z.files:
                raise CheckpointError(f"checkpoint {path} is unreadable: no metadata (not a fedembed checkpoint?)")
            meta = json.loads(bytes(z["__meta__"]).decode())
            tables = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("table/")}
            arrays = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("state/")}
    except CheckpointError:
        raise
    # What a truncated or damaged archive raises: zipfile.BadZipFile, EOFError, zlib.error (a cut
    # member), ValueError (a bad .npy header, bad JSON, bad UTF-8), SyntaxError and
    # tokenize.TokenError (numpy parses a member's header with ast), MemoryError (a header
    # claiming a huge array), RecursionError (absurdly nested JSON).
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError, TokenError,
            MemoryError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or damaged?): {one_line(exc)}") from exc
    _check(path, meta, tables)
    return State(meta["round"], tables, meta["vocab_fingerprint"], meta.get("extra", {}), arrays)


def _check(path: Path, meta: object, tables: dict[str, np.ndarray]) -> None:
    """What `load`'s callers rely on: a round, a vocabulary fingerprint, floating-point tables."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} is unreadable: its metadata is not an object")
    rnd = meta.get("round")
    if not isinstance(rnd, int) or isinstance(rnd, bool) or rnd < 0:
        raise CheckpointError(f"checkpoint {path} is unreadable: 'round' must be an integer >= 0, got {rnd!r}")
    if not isinstance(meta.get("vocab_fingerprint"), str):
        raise CheckpointError(f"checkpoint {path} is unreadable: no vocabulary fingerprint")
    if not isinstance(meta.get("extra", {}), dict):
        raise CheckpointError(f"checkpoint {path} is unreadable: 'extra' must be an object")
    if not tables:
        raise CheckpointError(f"checkpoint {path} is unreadable: it holds no tables")
    for name, t in tables.items():
        if not np.issubdtype(t.dtype, np.floating):
            raise CheckpointError(f"checkpoint {path}: table {name!r} is {t.dtype}, expected floating point")


def exists(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT).is_file()
