"""Fewer noised values: release only the first K rows of the row index (`privacy.release_rows`).

Why: user-level DP adds noise of the same std to every released coordinate, however little
signal a row carries. With a public vocabulary sorted by public count, the rows past the
first few thousand are words that too few users hold for their sum to rise above that noise
(`fedembed plan` names the band), so releasing them only replaces what a warm start knew of
them with noise. Fixing K before the run, from public counts alone, costs no privacy: the
clients zero those rows before the clip (so all of C goes to the rows that can carry signal),
and the server leaves them at their start. The accounting is unchanged (sensitivity C).
"""
from __future__ import annotations

import numpy as np

from fedembed.errors import ConfigError
from fedembed.updates import ClientUpdate


class ReleaseRows:
    """Client stage, before the clip: rows K.. of the row tables (and their weights) set to zero."""

    def __init__(self, k: int, row_tables: tuple[str, ...]) -> None:
        self.k, self.row_tables = k, row_tables

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        update.tables = {name: keep_first(t, self.k) if name in self.row_tables else t
                         for name, t in update.tables.items()}
        update.weights = {name: keep_first(w, self.k) if name in self.row_tables else w
                          for name, w in update.weights.items()}
        return update

    def describe(self) -> str:
        return (f"release rows: only the first {self.k} rows (by public count) of {', '.join(self.row_tables)}; "
                f"the others are zeroed before the clip and keep their start")


def keep_first(table: np.ndarray, k: int) -> np.ndarray:
    """A copy of `table` whose rows k.. are zero (the table itself when it has no more than k rows)."""
    if len(table) <= k:
        return table
    out = np.array(table, copy=True)
    out[k:] = 0
    return out


def server_release(deltas: dict[str, np.ndarray], k: int, row_tables: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The released round: rows k.. of the row tables left unchanged (their noise dropped:
    post-processing of the noisy sum)."""
    return {name: keep_first(d, k) if name in row_tables else d for name, d in deltas.items()}


def check(cfg) -> None:
    k = cfg.privacy.release_rows
    if k and not cfg.privacy.user_level:
        raise ConfigError("privacy.release_rows limits what user-level DP noises and releases: it needs "
                          "privacy.user_level = true")
    if k and cfg.privacy.record.enabled:
        raise ConfigError("privacy.release_rows is not wired for record-level DP-SGD (it noises every row "
                          "at every step); use it with user-level DP")
