"""Per-client token shards on disk: int32 token ids plus int64 sentence end offsets.

Written incrementally as the corpus streams past (bounded buffers), read back with
`np.fromfile` by the client that owns the shard. A third file gives each sentence the
client-local index of its natural unit (file, JSONL client_id, article), so record-level
DP can take a whole document as its unit of privacy.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_FLUSH_TOKENS = 1 << 20
ROWS = "rows.tsv"   # the row index (words, items, nodes) as `vocab.tsv`, beside the shards


def shard_paths(directory: Path, client: int) -> tuple[Path, Path]:
    stem = directory / f"client_{client:05d}"
    return stem.with_suffix(".ids"), stem.with_suffix(".bounds")


def units_path(directory: Path, client: int) -> Path:
    return Path(directory) / f"client_{client:05d}.units"


@dataclass
class ShardStats:
    tokens: list[int]
    sentences: list[int]
    units: list[int]


class ShardWriter:
    def __init__(self, directory: Path, num_clients: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = num_clients
        self._ids: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        self._buffered = 0
        self.tokens = [0] * num_clients
        self.sentences = [0] * num_clients
        self._units: list[dict[str, int]] = [{} for _ in range(num_clients)]
        self._sent_units: list[list[int]] = [[] for _ in range(num_clients)]
        # Files are created empty here and appended to at each flush, not held open: three
        # handles per client ran out of file descriptors at ~6,700 clients.
        for k in range(num_clients):
            for path in self._paths(k):
                path.write_bytes(b"")

    def _paths(self, client: int) -> tuple[Path, Path, Path]:
        return (*shard_paths(self.dir, client), units_path(self.dir, client))

    def append(self, client: int, ids: np.ndarray, unit: str) -> None:
        if len(ids) == 0:
            return
        self._ids[client].append(ids.astype(np.int32, copy=False))
        self._buffered += len(ids)
        units = self._units[client]
        self._sent_units[client].append(units.setdefault(unit, len(units)))
        if self._buffered >= _FLUSH_TOKENS:
            self.flush()

    def flush(self) -> None:
        for k, chunks in enumerate(self._ids):
            if not chunks:
                continue
            lengths = np.array([len(c) for c in chunks], dtype=np.int64)
            ends = self.tokens[k] + np.cumsum(lengths)
            ids_path, bounds_path, units = self._paths(k)
            for path, values in ((ids_path, np.concatenate(chunks)), (bounds_path, ends),
                                 (units, np.array(self._sent_units[k], dtype=np.int32))):
                with open(path, "ab") as fh:
                    values.tofile(fh)
            self._sent_units[k] = []
            self.tokens[k] = int(ends[-1])
            self.sentences[k] += len(chunks)
            self._ids[k] = []
        self._buffered = 0

    def close(self) -> ShardStats:
        self.flush()
        return ShardStats(self.tokens, self.sentences, [len(u) for u in self._units])


def load_shard(directory: Path, client: int) -> tuple[np.ndarray, np.ndarray]:
    ids_path, bounds_path = shard_paths(Path(directory), client)
    if not ids_path.is_file() or not bounds_path.is_file():
        raise FileNotFoundError(f"no shard for client {client} in {directory}")
    ids = np.fromfile(ids_path, dtype=np.int32)
    bounds = np.fromfile(bounds_path, dtype=np.int64)
    if len(bounds) and bounds[-1] != len(ids):
        raise ValueError(f"shard {ids_path} is inconsistent with {bounds_path}")
    return ids, bounds


def load_rows(directory: Path):
    """The row index written beside the shards (a `Vocabulary`), read once per process."""
    from fedembed.vocab import Vocabulary

    path = Path(directory) / ROWS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the shards in {directory} were written without their row "
                                f"index; delete {directory} so that the run prepares its data again")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _ROWS_CACHE:
        _ROWS_CACHE.clear()
        _ROWS_CACHE[key] = Vocabulary.load(path)
    return _ROWS_CACHE[key]


_ROWS_CACHE: dict = {}


def load_units(directory: Path, client: int, num_sentences: int) -> np.ndarray:
    """Client-local unit index of every sentence; an error for shards written before units were kept."""
    path = units_path(directory, client)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this shard directory predates document units; "
                                f"delete {Path(directory)} so that the run prepares its shards again")
    units = np.fromfile(path, dtype=np.int32)
    if len(units) != num_sentences:
        raise ValueError(f"{path} has {len(units)} entries for {num_sentences} sentences")
    return units


@dataclass
class Manifest:
    num_clients: int
    vocab_fingerprint: str
    tokens: list[int]
    sentences: list[int]
    units: list[int]
    skipped: list[int] = field(default_factory=list)

    @property
    def active(self) -> list[int]:
        skip = set(self.skipped)
        return [k for k in range(self.num_clients) if k not in skip]

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        return cls(**json.loads(Path(path).read_text()))
