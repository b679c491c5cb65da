"""`BaseFamily`: what a family declares unless it says otherwise (fedembed.models.Family).

A text family over row-indexed tables, no record-level DP, its client's data read by its
kind's source, evaluated by nothing (an empty `quality`), exported as word2vec vectors of its
rows. A family overrides what differs; nothing here knows any family.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fedembed.models import TEXT, FamilyReport, RunView

WORD2VEC_FORMATS = ("word2vec-text", "word2vec-binary", "npy")   # fedembed.export.FORMATS


class BaseFamily:
    data_kind: ClassVar[str] = TEXT
    tables: ClassVar[tuple[str, ...]] = ()
    record_dp: ClassVar[bool] = False
    cohorts: ClassVar[bool] = False       # FedSGD users trained in one vectorised step (train_cohort)
    export_formats: ClassVar[tuple[str, ...]] = WORD2VEC_FORMATS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "row_tables" not in cls.__dict__:
            cls.row_tables = cls.tables   # every table indexed by the row index, unless declared

    row_tables: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    @classmethod
    def check(cls, cfg) -> None:
        pass

    def load_data(self, shard_dir: Path, client: int) -> Any:
        from fedembed.data.sources import make

        return make(self.data_kind).load(shard_dir, client)

    def evaluate(self, run: RunView, quick: bool = False) -> dict[str, Any]:
        return {}

    def round_figures(self, run: RunView) -> dict[str, Any]:
        return {}

    def report(self, run: RunView) -> FamilyReport:
        files = self.export(run, run.run_dir / "embeddings.txt", "word2vec-text") if run.run_dir else []
        return FamilyReport(self.evaluate(run), files=files)

    def export(self, run: RunView, path: Path, fmt: str) -> list[Path]:
        """The row vectors in a word2vec format (fedembed.export); a family adds its own formats."""
        from fedembed.errors import ConfigError
        from fedembed.export import export

        if fmt not in WORD2VEC_FORMATS:
            raise ConfigError(f"--format {fmt}: model.family = {run.cfg.model.family!r} exports "
                              f"{', '.join(self.export_formats)}")
        return export(run.rows.words, self.word_vectors(run.tables, run.rows.words), path, fmt)

    def word_vectors(self, tables: dict[str, np.ndarray], words: list[str] | None = None) -> np.ndarray:
        return tables[self.tables[0]]


def ones(tables: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Weight 1 on every row of `names`: a table whose rows are not the row index's averages plainly."""
    return {k: np.ones(len(tables[k]), dtype=np.float64) for k in names}
