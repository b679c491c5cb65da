"""Per-client token shards on disk: int32 token ids plus int64 sentence end offsets.

Written incrementally as the corpus streams past (bounded buffers), read back with
`np.fromfile` by the client that owns the shard. A third file gives each sentence the
client-local index of its natural unit (file, JSONL client_id, article), so record-level
DP can take a whole document as its unit of privacy.

Two layouts. Up to `PACKED_ABOVE` clients, three small files per client. Beyond it — a
cross-device population of 10⁵ users, where 3 files each cost minutes to create and a file
system block each (2.9 GB for 240k users of ~30 tokens) — every flush appends all clients'
buffered sentences to three shared files (`packed.*`), and an index records each client's
segments; a client's shard is read back as slices of memory-mapped files. Same arrays either way.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_FLUSH_TOKENS = 1 << 20
ROWS = "rows.tsv"   # the row index (words, items, nodes) as `vocab.tsv`, beside the shards
PACKED_ABOVE = 4096  # more clients than this: the packed layout
PACKED = ("packed.ids", "packed.bounds", "packed.units")
PACKED_INDEX = "packed.index.npz"


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
    def __init__(self, directory: Path, num_clients: int, packed: bool | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = num_clients
        self.packed = num_clients > PACKED_ABOVE if packed is None else packed
        self._segments: list[tuple[int, int, int, int]] = []   # packed: (client, ids offset, sentence offset, sentences)
        self._offsets = [0, 0]                                  # packed: tokens and sentences written so far
        self._ids: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        self._buffered = 0
        self.tokens = [0] * num_clients
        self.sentences = [0] * num_clients
        self._units: list[dict[str, int]] = [{} for _ in range(num_clients)]
        self._sent_units: list[list[int]] = [[] for _ in range(num_clients)]
        # Files are created empty here and appended to at each flush, not held open: three
        # handles per client ran out of file descriptors at ~6,700 clients.
        for path in ([self.dir / name for name in PACKED] if self.packed
                     else [path for k in range(num_clients) for path in self._paths(k)]):
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
        if self.packed:
            return self._flush_packed()
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

    def _flush_packed(self) -> None:
        """Every client's buffered sentences, one after another, appended to the shared files."""
        parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
        for k, chunks in enumerate(self._ids):
            if not chunks:
                continue
            lengths = np.array([len(c) for c in chunks], dtype=np.int64)
            ends = self.tokens[k] + np.cumsum(lengths)
            self._segments.append((k, self._offsets[0], self._offsets[1], len(chunks)))
            parts[0].append(np.concatenate(chunks))
            parts[1].append(ends)
            parts[2].append(np.array(self._sent_units[k], dtype=np.int32))
            self._offsets[0] += int(lengths.sum())
            self._offsets[1] += len(chunks)
            self._sent_units[k] = []
            self.tokens[k] = int(ends[-1])
            self.sentences[k] += len(chunks)
            self._ids[k] = []
        for name, arrays in zip(PACKED, parts):
            if arrays:
                with open(self.dir / name, "ab") as fh:
                    np.concatenate(arrays).tofile(fh)
        self._buffered = 0

    def close(self) -> ShardStats:
        self.flush()
        if self.packed:
            seg = np.array(self._segments, dtype=np.int64).reshape(-1, 4)
            order = np.argsort(seg[:, 0], kind="stable")          # a client's segments, in the order written
            tmp = self.dir / (PACKED_INDEX + ".tmp.npz")
            np.savez(tmp, segments=seg[order], tokens=np.array(self.tokens, dtype=np.int64),
                     sentences=np.array(self.sentences, dtype=np.int64))
            tmp.replace(self.dir / PACKED_INDEX)
        return ShardStats(self.tokens, self.sentences, [len(u) for u in self._units])


class _Packed:
    """A packed shard directory, memory-mapped once per process (its index and three files)."""

    def __init__(self, directory: Path) -> None:
        with np.load(directory / PACKED_INDEX) as z:
            seg, self.tokens = z["segments"], z["tokens"]
        self.client, self.ids_off, self.sent_off, self.sent_len = seg.T
        self.first = np.searchsorted(self.client, np.arange(len(self.tokens) + 1))
        maps = []
        for name, dtype in zip(PACKED, (np.int32, np.int64, np.int32)):
            path = directory / name
            maps.append(np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype))
        self.ids, self.bounds, self.units = maps

    def shard(self, client: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token ids, client-local sentence ends, sentence units) of one client, from its segments."""
        if not 0 <= client < len(self.tokens):
            raise FileNotFoundError(f"no shard for client {client} (the packed shards hold {len(self.tokens)})")
        ids, bounds, units, before = [], [], [], 0
        for i in range(self.first[client], self.first[client + 1]):
            s0, n, lo = int(self.sent_off[i]), int(self.sent_len[i]), int(self.ids_off[i])
            ends = np.asarray(self.bounds[s0:s0 + n])
            ids.append(np.asarray(self.ids[lo:lo + int(ends[-1]) - before]))
            bounds.append(ends)
            units.append(np.asarray(self.units[s0:s0 + n]))
            before = int(ends[-1])
        cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
        return cat(ids, np.int32), cat(bounds, np.int64), cat(units, np.int32)


_PACKED_CACHE: dict = {}


def _packed(directory: Path) -> _Packed | None:
    """The directory's packed shards (opened once per process), or None for per-client files."""
    index = Path(directory) / PACKED_INDEX
    if not index.is_file():
        return None
    st = index.stat()
    key = (str(index.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _PACKED_CACHE:
        _PACKED_CACHE.clear()
        _PACKED_CACHE[key] = _Packed(Path(directory))
    return _PACKED_CACHE[key]


def is_packed(directory: Path) -> bool:
    return (Path(directory) / PACKED_INDEX).is_file()


def load_shard(directory: Path, client: int) -> tuple[np.ndarray, np.ndarray]:
    packed = _packed(directory)
    if packed is not None:
        return packed.shard(client)[:2]
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
    packed = _packed(directory)
    if packed is not None:
        units = packed.shard(client)[2]
        if len(units) != num_sentences:
            raise ValueError(f"packed shards in {directory}: client {client} has {len(units)} unit entries for "
                             f"{num_sentences} sentences")
        return units
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
