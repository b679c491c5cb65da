"""Reading word-vector files: word2vec text and binary (plain, .gz or .bz2), and .npy with
its .vocab.txt.

fedembed reads these itself rather than with gensim's `load_word2vec_format`, because:
- memory: gensim reads the header and each text row with an unbounded `readline` (a file
  without line breaks is held whole, several times over) and preallocates the header's row
  count (a header claiming 99999999999 rows is a MemoryError). Here every line is bounded
  (fedembed/data/lines.py) and rows are stored as they arrive, so memory follows what the
  file holds, never what its header claims;
- errors: each problem is a `CorpusError` naming the file and the line (text) or the vector
  (binary), never a traceback;
- ambiguity: a word given twice is refused (gensim keeps the first silently), as serving
  refuses it.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from fedembed.data.lines import MAX_LINE_BYTES, READ_ERRORS, one_line, opener, raw_lines, text_lines
from fedembed.errors import CorpusError

MAX_DIM = 65_536          # far above any embedding; keeps one binary row's read bounded
_CHUNK = 1 << 20


class VectorsFileError(CorpusError, ValueError):
    """A vectors file that cannot be read. Also a ValueError, which callers of
    `fedembed.export.load_vectors` (serving) catch and wrap."""


class _NotText(Exception):
    """The first row does not parse as text: the file may be binary."""

    def __init__(self, error: CorpusError, decodable: bool) -> None:
        super().__init__(str(error))
        self.error, self.decodable = error, decodable


def read_vectors(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(words, float32 [V, D] vectors) of a word2vec text or binary file, told apart by content
    (a `.bin` suffix means binary), or of a `.npy` with its `.vocab.txt`."""
    path = Path(path)
    try:
        return _read_any(path)
    except VectorsFileError:
        raise
    except CorpusError as exc:
        raise VectorsFileError(str(exc)) from exc


def _read_any(path: Path) -> tuple[list[str], np.ndarray]:
    if path.suffix == ".npy":
        return _read_npy(path)
    if path.suffix == ".bin":
        return _read_binary(path)
    try:
        return _read_text(path)
    except _NotText as text:
        try:
            return _read_binary(path)
        except CorpusError as binary:
            raise (text.error if text.decodable else binary) from None


def _open(path: Path) -> BinaryIO:
    try:
        return opener(path)(path, "rb")
    except OSError as exc:
        raise CorpusError(f"cannot read vectors file {path}: {exc.strerror or one_line(exc)}") from exc


def _header(path: Path, line: str | None) -> tuple[int, int]:
    """word2vec's first line: the number of vectors and their dimension."""
    parts = (line or "").split()
    try:
        rows, dim = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        rows = dim = None
    if rows is None or dim is None:
        shown = (line or "").strip()
        raise CorpusError(f"{path}:1: expected a word2vec header 'ROWS DIM', got {shown[:60]!r}")
    if rows < 1:
        raise CorpusError(f"{path}:1: the header gives {rows} vectors; expected at least 1")
    if not 1 <= dim <= MAX_DIM:
        raise CorpusError(f"{path}:1: the header gives dimension {dim}; expected 1 to {MAX_DIM}")
    return rows, dim


class _Words:
    """The words read so far: each non-empty, without spaces or line breaks (it must survive a
    word2vec text export), and given once."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.seen: dict[str, str] = {}

    def add(self, word: str, where: str) -> None:
        if not word or any(c in word for c in " \n\r"):
            raise CorpusError(f"{where}: a word must be non-empty and hold no space or line break, got {word!r}")
        if word in self.seen:
            raise CorpusError(f"{where}: word {word!r} is given twice (first at {self.seen[word]})")
        self.words.append(word)
        self.seen[word] = where


class _Rows(_Words):
    """Vectors stored as they arrive, in a buffer doubled as needed up to the header's count:
    memory follows the file's content, not its header's claim."""

    def __init__(self, expected: int, dim: int) -> None:
        super().__init__()
        self.expected, self.n = expected, 0
        self.buf = np.empty((min(expected, 1024), dim), dtype=np.float32)

    def add_row(self, word: str, vector: np.ndarray, where: str) -> None:
        self.add(word, where)
        if self.n == len(self.buf):
            grown = np.empty((min(2 * len(self.buf), self.expected), self.buf.shape[1]), dtype=np.float32)
            grown[:self.n] = self.buf
            self.buf = grown
        self.buf[self.n] = vector
        self.n += 1

    def result(self) -> tuple[list[str], np.ndarray]:
        return self.words, self.buf if self.n == len(self.buf) else self.buf[:self.n].copy()


def _read_text(path: Path) -> tuple[list[str], np.ndarray]:
    with _open(path) as fh:
        lines = text_lines(fh, path)
        first = next(lines, None)
        rows, dim = _header(path, first[1] if first else None)
        store, last = _Rows(rows, dim), 1
        while True:
            try:
                item = next(lines, None)
                if item is None:
                    break
                last, line = item
                if not line.strip():
                    continue
                if store.n == rows:
                    raise CorpusError(f"{path}:{last}: more vectors than the header's {rows}")
                store.add_row(*_text_row(path, last, line, dim), where=f"{path}:{last}")
            except CorpusError as exc:
                if store.n == 0:  # the first row: perhaps a binary file behind a text header
                    raise _NotText(exc, _decodable(path)) from None
                raise
    if store.n < rows:
        raise CorpusError(f"{path}:{last}: the header gives {rows} vectors, the file ends after {store.n}")
    return store.result()


def _text_row(path: Path, lineno: int, line: str, dim: int) -> tuple[str, np.ndarray]:
    parts = line.rstrip().split(" ")
    if len(parts) != dim + 1:
        raise CorpusError(f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields")
    try:
        vector = np.array(parts[1:], dtype=np.float32)
    except ValueError as exc:
        raise CorpusError(f"{path}:{lineno}: {one_line(exc)}") from exc
    return parts[0], vector


def _decodable(path: Path) -> bool:
    """Whether the header and first row read as UTF-8 text (then a text error is the one to report)."""
    try:
        with _open(path) as fh:
            for lineno, raw in raw_lines(fh, path):
                raw.decode("utf-8")
                if b"\x00" in raw:
                    return False
                if lineno == 2:
                    break
        return True
    except (CorpusError, UnicodeDecodeError):
        return False


def _read_binary(path: Path) -> tuple[list[str], np.ndarray]:
    with _open(path) as fh:
        header = next(raw_lines(fh, path), None)
        try:
            rows, dim = _header(path, header[1].decode("utf-8") if header else None)
        except UnicodeDecodeError:
            raise CorpusError(f"{path}:1: expected a word2vec header 'ROWS DIM' (not valid UTF-8)") from None
        store, reader, size = _Rows(rows, dim), _Bytes(fh, path), dim * 4
        for i in range(1, rows + 1):
            where = f"{path}: vector {i}"
            word = reader.word(where)
            if word is None or not reader.has(size):
                raise CorpusError(f"{where}: the header gives {rows} vectors, the file ends after {i - 1}")
            try:
                text = word.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusError(f"{where}: word is not valid UTF-8 ({exc.reason})") from exc
            store.add_row(text, np.frombuffer(reader.take(size), dtype=np.float32), where)
        if reader.trailing_data():
            raise CorpusError(f"{path}: data after the header's {rows} vectors")
    return store.result()


class _Bytes:
    """A binary word2vec body read in 1 MiB chunks: words end at a space (leading line breaks
    dropped, as word2vec.c writes one after each vector), vectors are `dim` float32s."""

    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self.fh, self.path = fh, path
        self.buf, self.pos = bytearray(), 0

    def _more(self, n: int) -> bool:
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        try:
            chunk = self.fh.read(max(n, _CHUNK))
        except READ_ERRORS as exc:
            raise CorpusError(f"{self.path}: cannot read ({one_line(exc)})") from exc
        self.buf += chunk
        return bool(chunk)

    def has(self, n: int) -> bool:
        while len(self.buf) - self.pos < n:
            if not self._more(n - (len(self.buf) - self.pos)):
                return False
        return True

    def take(self, n: int) -> bytes:
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def word(self, where: str) -> bytes | None:
        """The next word (None at the end of the file); at most `MAX_LINE_BYTES` long."""
        scanned = 0
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] == 0x0A:
                self.pos += 1
            i = self.buf.find(b" ", self.pos + scanned)
            if i >= 0:
                word = bytes(self.buf[self.pos:i])
                self.pos = i + 1
                return word
            scanned = len(self.buf) - self.pos
            if scanned > MAX_LINE_BYTES:
                raise CorpusError(f"{where}: no space after {MAX_LINE_BYTES} bytes (not a word2vec binary file?)")
            if not self._more(1):
                return None

    def trailing_data(self) -> bool:
        """Whether anything but whitespace follows the last vector (read in chunks, not whole)."""
        while True:
            if bytes(self.buf[self.pos:]).strip():
                return True
            self.pos = len(self.buf)
            if not self._more(1):
                return False


def _read_npy(path: Path) -> tuple[list[str], np.ndarray]:
    vocab = path.with_suffix(".vocab.txt")
    if not path.is_file():
        raise CorpusError(f"vectors file does not exist: {path}")
    if not vocab.is_file():
        raise CorpusError(f"{path}: no {vocab.name} next to it (its words, one per line)")
    try:
        # Memory-mapped: the header's shape is checked against the file's size, nothing is
        # allocated for what the file does not hold.
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy parses a damaged header with ast/tokenize: many error types
        raise CorpusError(f"{path}: not a readable .npy array ({one_line(exc)})") from exc
    if not isinstance(arr, np.ndarray):
        getattr(arr, "close", lambda: None)()
        raise CorpusError(f"{path}: not a .npy array (an .npz archive?)")
    if arr.ndim != 2 or arr.dtype.kind != "f" or arr.shape[0] < 1 or not 1 <= arr.shape[1] <= MAX_DIM:
        raise CorpusError(f"{path}: expected a 2-D float array of at least one vector, got {arr.dtype} {arr.shape}")
    words = _Words()
    with _open(vocab) as fh:
        for lineno, word in text_lines(fh, vocab):
            if len(words.words) == arr.shape[0]:
                if not word.strip():
                    continue  # trailing blank lines
                raise CorpusError(f"{vocab}:{lineno}: more words than the {arr.shape[0]} vectors of {path}")
            words.add(word, f"{vocab}:{lineno}")
    if len(words.words) < arr.shape[0]:
        raise CorpusError(f"{vocab} has {len(words.words)} words but {path} has {arr.shape[0]} vectors")
    try:
        return words.words, np.array(arr, dtype=np.float32)
    except (ValueError, OSError) as exc:
        raise CorpusError(f"{path}: cannot read its vectors ({one_line(exc)})") from exc
