"""Data sources: one per kind of data a family trains on, one file each, registered by kind.

A source turns the scenario's `[data]` into the federation's inputs — the row index (a
`Vocabulary`: words, items or nodes, with public counts) and one shard per client in the run
directory — and reads a client's shard back for the family that trains on it. The kinds
(fedembed.models: TEXT, RATINGS, GRAPH, PAIRS) are what a family declares as `data_kind`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from fedembed.registry import Registry

if TYPE_CHECKING:
    from fedembed.config import Config
    from fedembed.data.shards import Manifest
    from fedembed.vocab import Vocabulary


class DataSource(Protocol):
    kind: ClassVar[str]

    def check(self, cfg: Config) -> None: ...   # its `[data]` keys; a ConfigError naming the key

    def build(self, cfg: Config, shard_dir: Path) -> tuple[Vocabulary, Manifest]: ...  # rows, shards written

    def load(self, shard_dir: Path, client: int) -> Any: ...   # one client's shard


SOURCES: Registry[type] = Registry("data source")


def make(kind: str) -> DataSource:
    return SOURCES.get(kind)()


from fedembed.data.sources import graph, pairs, ratings, text  # noqa: E402,F401  (registration)
