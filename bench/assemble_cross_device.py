"""Assemble the cross-device corpus: many users, each with one short English text.

Called by bench/get_cross_device.sh once the Debian packages and the English package
descriptions are there. A cross-device federation has 10^5–10^6 users holding a few dozen
words each (phones), not ten holding a book; this corpus gives fedembed that shape from real
English text installed on the machine. One user (one JSON Lines record) per:

    debian/PACKAGE     a package's description (synopsis + long description) from the apt
                       index's English translations (apt-get update -o Acquire::Languages=en);
                       packages sharing one description are one user (the first name)
    devil/HEADWORD     an entry of Bierce's Devil's Dictionary (dict-devil)
    foldoc/HEADWORD    an entry of the Free On-line Dictionary of Computing (dict-foldoc)
    fortunes/FILE/N    a fortune (fortunes, fortunes-min; `ascii-art` left out)
    jargon/HEADWORD    an entry of the Jargon File (dict-jargon)
    kjv/NN_BOOK/C:V    a verse of the King James Bible (bible-kjv)
    wordnet/WORD/N     a WordNet 3.0 sense, "word: gloss; examples" (dict-wn); a gloss that
                       several words share is one user (the first word), synonym lists dropped

Dictionary markup is removed (cross-reference braces, URLs, WordNet's [syn: ...] lists).
The gensim text that fedembed calls `builtin` (the Lee news corpus and the Wikipedia sample)
is deliberately NOT part of it: it is the public warm start's training text
(`model.init = "public"`), and keeping it out keeps "public" and "private" disjoint.

Writes, under OUT (replaced):
    OUT/corpus.jsonl    {"client_id": ..., "source": ..., "text": ...} one user a line, sources
                        in name order, each in its own stable order (data.format = "jsonl";
                        partition.label = "field" with label_field = "source" labels by source)
    OUT/vocab.tsv       every word with its count, most frequent first (vocab.source)
    OUT/manifest.json   users and tokens per source, the inputs' SHA-256, the options
Same installed packages and apt index, same bytes out.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from fedembed.data.tokenize import tokenize  # the tokenizer fedembed reads JSON Lines with

FORTUNE_DIR = Path("/usr/share/games/fortunes")
FORTUNE_SKIP = {"ascii-art"}                # pictures, not prose
DICTD_DIR = Path("/usr/share/dictd")
APT_HELPER = "/usr/lib/apt/apt-helper"
MIN_TOKENS = 5_000_000

_URL = re.compile(r"(?:https?|ftp)://\S+|www\.\S+|\S+@\S+\.\S+")
_WN_XREF = re.compile(r"\[(?:syn|ant|also)\s*:[^\]]*\]", re.S)
_WN_SENSE = re.compile(r"^\s+(?:(?:n|v|adj|adv)\s+)?\d+:\s")
_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}

User = tuple[str, str]                      # (client_id, text)


def clean(text: str) -> str:
    """One line of prose: URLs out, cross-reference braces off, whitespace collapsed."""
    text = _URL.sub(" ", text).replace("{", "").replace("}", "")
    return " ".join(text.split())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "x"


# ---- Debian package descriptions --------------------------------------------------------

def read_compressed(path: Path) -> str:
    """apt keeps its index files compressed (lz4 here); apt-helper reads every format apt writes."""
    try:
        out = subprocess.run([APT_HELPER, "cat-file", str(path)], check=True, capture_output=True).stdout
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"cannot read apt index file {path}: {exc}") from None
    return out.decode("utf-8", errors="replace")


def translation_records(text: str) -> Iterator[tuple[str, str, str]]:
    """(package, description-md5, description) of a Translation-en file (deb822 stanzas)."""
    for stanza in text.split("\n\n"):
        pkg = md5 = None
        desc: list[str] = []
        in_desc = False
        for line in stanza.splitlines():
            if line.startswith(" ") and in_desc:
                body = line[1:]
                desc.append("" if body.strip() == "." else body)      # " ." is a paragraph break
                continue
            in_desc = False
            key, _, value = line.partition(":")
            if key == "Package":
                pkg = value.strip()
            elif key == "Description-md5":
                md5 = value.strip()
            elif key.startswith("Description-"):
                in_desc = True
                desc.append(value.strip().rstrip(".") + ".")            # the synopsis, as a sentence
        if pkg and md5 and desc:
            yield pkg, md5, " ".join(desc)


def debian_users(files: list[Path]) -> Iterator[User]:
    by_pkg: dict[str, tuple[str, str]] = {}
    for f in sorted(files):                                             # first file (sorted) wins a package
        for pkg, md5, desc in translation_records(read_compressed(f)):
            by_pkg.setdefault(pkg, (md5, desc))
    seen: set[str] = set()
    for pkg in sorted(by_pkg):                                          # a shared description: one user
        md5, desc = by_pkg[pkg]
        if md5 not in seen:
            seen.add(md5)
            yield f"debian/{pkg}", clean(desc)


# ---- dictd dictionaries -------------------------------------------------------------------

def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64[c]
    return n


def dictd_entries(name: str) -> Iterator[tuple[str, str]]:
    """(headword, entry text) of /usr/share/dictd/NAME.{index,dict.dz}, each entry once, in index order."""
    index, data = DICTD_DIR / f"{name}.index", DICTD_DIR / f"{name}.dict.dz"
    if not index.is_file() or not data.is_file():
        raise SystemExit(f"{data} is missing: is the 'dict-{name}' package installed?")
    with gzip.open(data, "rb") as fh:                                   # dictzip is gzip
        raw = fh.read()
    seen: set[tuple[int, int]] = set()
    for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        span = (_b64(parts[1]), _b64(parts[2]))
        if span in seen:                                                # synonyms pointing at one entry
            continue
        seen.add(span)
        yield parts[0], raw[span[0]:span[0] + span[1]].decode("utf-8", errors="replace")


def dict_users(name: str) -> Iterator[User]:
    """One user per entry; the headword line stays (it is what the entry talks about). A
    headword with several entries (the Devil's Dictionary has a few) numbers the later ones."""
    seen: Counter[str] = Counter()
    for head, body in dictd_entries(name):
        text = clean(body)
        if text:
            seen[head] += 1
            yield (f"{name}/{head}" if seen[head] == 1 else f"{name}/{head}#{seen[head]}"), text


def wordnet_users() -> Iterator[User]:
    """One user per WordNet sense: 'word: gloss; "example"', synonym/antonym lists dropped."""
    seen: set[str] = set()
    heads: Counter[str] = Counter()
    for head, body in dictd_entries("wn"):
        heads[head] += 1
        entry = head if heads[head] == 1 else f"{head}#{heads[head]}"
        senses: list[list[str]] = []
        for line in body.splitlines()[1:]:                              # the first line is the headword
            if _WN_SENSE.match(line):
                senses.append([_WN_SENSE.sub("", line, count=1)])
            elif senses:
                senses[-1].append(line)
        for n, lines in enumerate(senses, start=1):
            gloss = clean(_WN_XREF.sub(" ", " ".join(lines)))
            if gloss and gloss not in seen:
                seen.add(gloss)
                yield f"wordnet/{entry}/{n}", f"{head}: {gloss}"


# ---- fortunes and the Bible ---------------------------------------------------------------

def fortune_users() -> Iterator[User]:
    if not FORTUNE_DIR.is_dir():
        raise SystemExit(f"{FORTUNE_DIR} is missing: is the 'fortunes' package installed?")
    files = sorted(p for p in FORTUNE_DIR.iterdir()
                   if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8")
                   and p.name not in FORTUNE_SKIP)
    if not files:
        raise SystemExit(f"no fortune files under {FORTUNE_DIR}: is the 'fortunes' package installed?")
    for p in files:
        entries = re.split(r"^%\s*$", p.read_text(encoding="utf-8", errors="replace"), flags=re.M)
        for n, entry in enumerate(entries, start=1):
            text = clean(entry)
            if text:
                yield f"fortunes/{_slug(p.name)}/{n}", text


def kjv_users() -> Iterator[User]:
    """`bible` prints 'Book C' headers and '  V text' verses; one line per verse with a wide -l."""
    try:
        text = subprocess.run(["bible", "-l100000", "gen1:1-rev22:21"], check=True, capture_output=True,
                              text=True).stdout
    except FileNotFoundError:
        raise SystemExit("the 'bible' program is missing: is the 'bible-kjv' package installed?") from None
    books: list[str] = []
    chapter = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():                                       # "1 Samuel 3"
            book, _, chapter = line.strip().rpartition(" ")
            if not books or books[-1] != book:
                books.append(book)
            continue
        m = re.match(r"\s*(\d+)\s+(.*)", line)
        if m and books:
            yield f"kjv/{len(books):02d}_{_slug(books[-1])}/{chapter}:{m.group(1)}", clean(m.group(2))
    if len(books) != 66:
        raise SystemExit(f"expected the 66 books of the KJV from 'bible', got {len(books)}")


# ---- assembly -----------------------------------------------------------------------------

def sources(translations: list[Path]) -> dict[str, Iterable[User]]:
    """Every source by name, in the order written (name order)."""
    return {
        "debian": debian_users(translations),
        "devil": dict_users("devil"),
        "foldoc": dict_users("foldoc"),
        "fortunes": fortune_users(),
        "jargon": dict_users("jargon"),
        "kjv": kjv_users(),
        "wordnet": wordnet_users(),
    }


def _rank(client_id: str) -> bytes:
    return hashlib.blake2b(client_id.encode("utf-8"), digest_size=8).digest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/data/cross_device", help="output directory (replaced)")
    ap.add_argument("--translations", nargs="+", type=Path, required=True, metavar="FILE",
                    help="apt's Translation-en index files (get_cross_device.sh lists them)")
    ap.add_argument("--max-users", type=int, default=0,
                    help="keep this many users, a fixed hash-chosen subset across all sources (0 = all)")
    ap.add_argument("--min-user-tokens", type=int, default=1,
                    help="drop users with fewer word tokens than this (default 1: no empty users)")
    ap.add_argument("--min-tokens", type=int, default=MIN_TOKENS,
                    help=f"exit 1 when the corpus has fewer tokens than this (default {MIN_TOKENS:,})")
    args = ap.parse_args(argv)
    if args.max_users < 0 or args.min_user_tokens < 1 or args.min_tokens < 0:
        ap.error("--max-users and --min-tokens must be >= 0, --min-user-tokens >= 1")
    missing = [str(p) for p in args.translations if not p.is_file()]
    if missing:
        raise SystemExit(f"apt translation file missing: {missing[0]} (run bench/get_cross_device.sh)")

    users: list[tuple[str, str, str, int]] = []                         # (source, id, text, tokens)
    for name, gen in sources(args.translations).items():
        for cid, text in gen:
            n = len(tokenize(text))
            if n >= args.min_user_tokens:
                users.append((name, cid, text, n))
    ids = [u[1] for u in users]
    if len(set(ids)) != len(ids):
        dup = next(c for c, k in Counter(ids).items() if k > 1)
        raise SystemExit(f"duplicate client_id {dup!r}: the assembler's id scheme is broken")
    if args.max_users and len(users) > args.max_users:
        keep = set(sorted(ids, key=_rank)[:args.max_users])
        users = [u for u in users if u[1] in keep]

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    counts: Counter[str] = Counter()
    per_source: dict[str, dict[str, int]] = {}
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for name, cid, text, n in users:
            fh.write(json.dumps({"client_id": cid, "source": name, "text": text}, ensure_ascii=False) + "\n")
            counts.update(tokenize(text))                               # exactly what fedembed will read
            s = per_source.setdefault(name, {"users": 0, "tokens": 0})
            s["users"] += 1
            s["tokens"] += n
    with open(out / "vocab.tsv", "w", encoding="utf-8") as fh:
        for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])):
            fh.write(f"{w}\t{c}\n")
    total = sum(counts.values())
    manifest = {
        "users": len(users), "tokens": total, "vocabulary": len(counts),
        "vocabulary_min_count_5": sum(1 for c in counts.values() if c >= 5),
        "sources": per_source,
        "translations": {p.name: _sha256(p) for p in sorted(args.translations)},
        "options": {"max_users": args.max_users, "min_user_tokens": args.min_user_tokens},
        "excluded": "fedembed's builtin corpus (gensim's Lee news corpus and Wikipedia sample): the public warm start",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{out / 'corpus.jsonl'}: {len(users):,} users, {total:,} tokens, {len(counts):,} distinct words "
          f"({manifest['vocabulary_min_count_5']:,} with count >= 5); "
          + ", ".join(f"{k} {v['users']:,}/{v['tokens']:,}" for k, v in per_source.items())
          + f" (users/tokens) -> {out / 'vocab.tsv'}")
    if total < args.min_tokens:
        print(f"warning: only {total:,} tokens (< --min-tokens {args.min_tokens:,})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
