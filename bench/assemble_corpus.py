"""Assemble the benchmark corpus: real English text that Debian packages and gensim install.

Called by bench/get_corpus.sh once the packages are there. Writes one file per document
(the natural partition's units) under OUT, one sentence or paragraph per line:

    OUT/builtin/lee/NNNN.txt     the Lee news corpus (gensim's lee_background.cor), one article each
    OUT/builtin/wiki/NNNN_*.txt  the Wikipedia sample gensim ships, one article each
    OUT/fortunes/NAME.txt        Debian's `fortunes` databases, one per topic file, one fortune a line
    OUT/kjv/NN_BOOK.txt          the King James Bible from Debian's `bible-kjv`, one book each, a verse a line

and, next to OUT, vocab.tsv: every word of the assembled corpus with its count (the
benchmark's shared vocabulary; vocab.min_count filters it). Built-in articles are
re-wrapped to at most 1,000 tokens a line: a line is a sentence, and gensim silently drops
the words of a sentence past 10,000 per job, which would shortchange the baseline.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from fedembed.data.corpus import read_corpus
from fedembed.data.tokenize import tokenize

FORTUNE_DIR = Path("/usr/share/games/fortunes")
FORTUNE_SKIP = {"ascii-art"}        # pictures, not prose
WRAP = 1000


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "x"


def write_builtin(out: Path) -> int:
    n = 0
    for i, doc in enumerate(read_corpus("builtin")):
        source, _, name = doc.unit.partition("/")
        path = out / "builtin" / source / (f"{i:04d}.txt" if source == "lee" else f"{i:04d}_{_slug(name)}.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        toks = doc.tokens
        path.write_text("".join(" ".join(toks[lo:lo + WRAP]) + "\n" for lo in range(0, len(toks), WRAP)),
                        encoding="utf-8")
        n += len(toks)
    return n


def write_fortunes(out: Path) -> int:
    n = 0
    files = sorted(p for p in FORTUNE_DIR.iterdir()
                   if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8") and p.name not in FORTUNE_SKIP)
    if not files:
        raise SystemExit(f"no fortune files under {FORTUNE_DIR}: is the 'fortunes' package installed?")
    (out / "fortunes").mkdir(parents=True, exist_ok=True)
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        entries = [" ".join(e.split()) for e in re.split(r"^%\s*$", text, flags=re.M)]
        entries = [e for e in entries if tokenize(e)]
        (out / "fortunes" / f"{_slug(p.name)}.txt").write_text("".join(e + "\n" for e in entries), encoding="utf-8")
        n += sum(len(tokenize(e)) for e in entries)
    return n


def write_kjv(out: Path) -> int:
    """`bible` prints 'Book N' headers and '  V text' verses; one line per verse with a wide -l."""
    try:
        text = subprocess.run(["bible", "-l100000", "gen1:1-rev22:21"], check=True, capture_output=True,
                              text=True).stdout
    except FileNotFoundError:
        raise SystemExit("the 'bible' program is missing: is the 'bible-kjv' package installed?") from None
    books: dict[str, list[str]] = {}
    book = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():                     # "1 Samuel 3": the book is all but the chapter
            book = line.rsplit(" ", 1)[0].strip()
            books.setdefault(book, [])
        elif book is not None:
            books[book].append(re.sub(r"^\s*\d+\s+", "", line).strip())
    if len(books) != 66:
        raise SystemExit(f"expected the 66 books of the KJV from 'bible', got {len(books)}")
    (out / "kjv").mkdir(parents=True, exist_ok=True)
    n = 0
    for i, (name, verses) in enumerate(books.items(), start=1):
        (out / "kjv" / f"{i:02d}_{_slug(name)}.txt").write_text("".join(v + "\n" for v in verses), encoding="utf-8")
        n += sum(len(tokenize(v)) for v in verses)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/data/corpus", help="corpus directory (replaced)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sizes = {"builtin": write_builtin(out), "fortunes": write_fortunes(out), "kjv": write_kjv(out)}
    counts: Counter[str] = Counter()
    files = 0
    for doc in read_corpus(out, "dir"):             # re-read as fedembed will: the vocabulary matches exactly
        counts.update(doc.tokens)
    files = sum(1 for p in out.rglob("*.txt"))
    vocab = out.parent / "vocab.tsv"
    with open(vocab, "w", encoding="utf-8") as fh:
        for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])):
            fh.write(f"{w}\t{c}\n")
    total = sum(counts.values())
    print(f"{out}: {files} files, {total:,} tokens ("
          + ", ".join(f"{k} {v:,}" for k, v in sizes.items()) + f"); {len(counts):,} distinct words, "
          f"{sum(1 for c in counts.values() if c >= 5):,} with count >= 5 -> {vocab}")
    if total < 1_000_000:
        print(f"warning: only {total:,} tokens (< 1M)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
