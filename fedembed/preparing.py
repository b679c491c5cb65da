"""The marker a run directory holds while its data is being prepared (see fedembed/rundir.py).

A new run writes `PREPARING` before its config; fedembed/data/prepare.py removes it once the
vocabulary and shards are complete. Kept apart from rundir.py, which the app layer uses, so
that the data stage below it can clear the marker without importing upward.
"""
from __future__ import annotations

from pathlib import Path

from fedembed import checkpoint

PREPARING = ".preparing"  # present from a new run's start until its data is prepared


def unprepared(out: Path) -> bool:
    """A run directory whose run never finished preparing its data (and so never trained)."""
    out = Path(out)
    return (out / PREPARING).is_file() and not checkpoint.exists(out)


def mark_prepared(out: Path) -> None:
    """The run's data is prepared: from now on the directory holds a run (see the module docstring)."""
    (Path(out) / PREPARING).unlink(missing_ok=True)
