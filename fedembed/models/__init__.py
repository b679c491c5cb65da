"""Embedding families: what the global state is, what data a client trains it on, how it is judged.

One family per file, registered by name (the scenario's `model.family`). A family declares
what it needs on its class (`Family` below) and everything else comes from that:

- `data_kind` picks the data source (fedembed/data/sources: one file per kind, registered by
  name) that prepares the row index (words, items, nodes: a `Vocabulary`) and the per-client
  shards, and reads a client's shard back;
- `tables`, `row_tables`: the global tables and which of them are indexed by the row index;
  every table is aggregated row-wise with the per-row weights the family returns (a table
  whose rows mean nothing, e.g. an adapter, gets weight 1 on every row: a plain mean);
- `train`: one client's local training from the global tables, with a private `state` that
  stays on the node (Flower's `context.state`) and never enters a message;
- `evaluate`, `report`, `export`: the run's quality, its centralized baselines and its files,
  which the report (fedembed/report.py), `fedembed evaluate` and `fedembed export` call
  without knowing the family.
"""
from __future__ import annotations


from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from fedembed.registry import Registry

if TYPE_CHECKING:
    from fedembed.config import Config
    from fedembed.privacy.record_dp import PrivateTraining


TEXT, RATINGS, GRAPH, PAIRS = "text", "ratings", "graph", "pairs"   # data kinds (fedembed/data/sources)

from fedembed.run_view import FamilyReport, LocalResult, RunView  # noqa: E402  (re-exported)


class Family(Protocol):
    data_kind: ClassVar[str]               # TEXT | RATINGS | GRAPH | PAIRS: the source of its rows and shards
    tables: ClassVar[tuple[str, ...]]      # the global tables, each 2-D [rows, dim]
    row_tables: ClassVar[tuple[str, ...]]  # the tables whose row r is row r of the row index
    record_dp: ClassVar[bool]              # whether `train` runs record-level DP-SGD (privacy.record)
    cohorts: ClassVar[bool]                # whether `train_cohort` trains FedSGD users in one vectorised step
    export_formats: ClassVar[tuple[str, ...]]  # what `export` writes (the first ones: word2vec's)

    def __init__(self, cfg: Config) -> None: ...

    @classmethod
    def check(cls, cfg: Config) -> None: ...   # this family's keys and the scenario it can run; ConfigError

    def init_tables(self, vocab_size: int, seed: int) -> dict[str, np.ndarray]: ...

    def load_data(self, shard_dir: Path, client: int) -> Any: ...   # this client's shard, as its source wrote it

    def train(self, tables: dict[str, np.ndarray], data: Any, counts: np.ndarray, lr_start: float,
              lr_end: float, seed: int, private: PrivateTraining | None = None,
              state: dict[str, np.ndarray] | None = None) -> LocalResult: ...
    # `counts`: the row index's public counts; `private`: DP-SGD (only when `record_dp`);
    # `state`: this node's private arrays, read and updated in place, kept on the node.

    def word_vectors(self, tables: dict[str, np.ndarray], words: list[str] | None = None) -> np.ndarray: ...
    # one vector per row of the row index; `words`, the rows' names, for a family whose vectors need them

    def evaluate(self, run: RunView, quick: bool = False) -> dict[str, Any]: ...  # quick: the slow parts left out

    def round_figures(self, run: RunView) -> dict[str, Any]: ...   # metrics.jsonl's `quality` (eval.every_round)

    def report(self, run: RunView) -> FamilyReport: ...   # exports, quality, centralized baselines

    def export(self, run: RunView, path: Path, fmt: str) -> list[Path]: ...


FAMILIES: Registry[type] = Registry("model family")


def make(cfg: Config) -> Family:
    return FAMILIES.get(cfg.model.family)(cfg)


def check(cfg: Config) -> None:
    """The scenario keys the family owns and the combinations it cannot run (compose.CHECKS)."""
    from fedembed.errors import ConfigError

    if cfg.model.family not in FAMILIES:
        return  # compose.validate names the unknown family
    family = FAMILIES.get(cfg.model.family)
    name = cfg.model.family
    if cfg.privacy.record.enabled and not family.record_dp:
        raise ConfigError(f"privacy.record.enabled: model.family = {name!r} has no record-level DP-SGD "
                          f"(use user-level DP, privacy.user_level = true)")
    if cfg.privacy.user_level and cfg.privacy.denominator == "public" and set(family.row_tables) != set(family.tables):
        others = sorted(set(family.tables) - set(family.row_tables))
        raise ConfigError(f"privacy.denominator = \"public\" divides rows by public row-index counts, and "
                          f"model.family = {name!r} has tables not indexed by the row index ({', '.join(others)}); "
                          f"use privacy.denominator = \"noisy\"")
    family.check(cfg)


from fedembed.models import base  # noqa: E402  (BaseFamily: the defaults)
from fedembed.models import cbow, fasttext, mf, node2vec, sentence, sgns  # noqa: E402,F401  (registration)

BaseFamily = base.BaseFamily
