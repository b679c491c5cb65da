"""The privacy ledger written ahead of a release, so that a crash can never hide one.

A round's release (the unmasked secure sum, the centrally noised sum, or record-level replies
whose steps the clients' accountants took) may reach the server before the round's checkpoint
is written. If the server then dies, the resumed run re-runs the round from the last
checkpoint, whose ledger does not know the first release. So the session charges the round
first and this module writes the charged ledger (and the clients' record-level accountant
states) to `privacy.wal.json` before the release is used; a resumed run whose checkpoint is
older than the log adopts the logged ledger, and the re-run round is charged again — two
releases, two charges.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
WAL = "privacy.wal.json"


def write(run_dir: Path, rnd: int, extra: dict[str, Any]) -> None:
    """The privacy part of the checkpoint's `extra` as it is after round `rnd`'s charge, durably."""
    path = Path(run_dir) / WAL
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"round": rnd, "extra": extra}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def recover(run_dir: Path, checkpoint_round: int, extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` with the logged ledger adopted when the log is from a round the checkpoint does
    not have (a release charged, then lost to a crash); else `extra` as it is."""
    path = Path(run_dir) / WAL
    if not path.is_file():
        return extra
    try:
        logged = json.loads(path.read_text(encoding="utf-8"))
        rnd, saved = int(logged["round"]), dict(logged["extra"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        from fedembed.errors import CheckpointError
        raise CheckpointError(f"{path} is unreadable ({exc}): it may hold a release the checkpoint lacks, so "
                              f"the run cannot safely resume without it") from None
    if rnd <= checkpoint_round:
        return extra
    log.warning("round %d's release was charged to the privacy ledger but the run stopped before its "
                "checkpoint: the charge stands, and the round is run (and charged) again", rnd)
    return {**extra, **saved}
