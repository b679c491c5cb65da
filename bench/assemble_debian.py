"""Build the node2vec and sentence-encoder benchmark data from Debian's apt index (offline).

Reads the `*_Packages` and `*_Translation-en` lists that `apt-get update` leaves in
/var/lib/apt/lists (compressed ones through apt's own `apt-helper cat-file`) and writes:

  graph/edges.tsv    package<TAB>dependency (Depends and Pre-Depends, each alternative group's
                     first choice that is a real package; undirected for node2vec)
  graph/labels.tsv   package<TAB>section (the last part: "contrib/net" → "net")
  graph/owners.tsv   package<TAB>maintainer e-mail (who holds the node: a client per maintainer)
  pairs.jsonl        {"client_id": maintainer, "anchor": short description, "positive": long one}

The graph is the largest connected component of the packages in the `--sections` largest
sections (libraries excluded: they are the hubs every section depends on, and would make the
labels a library-vs-rest problem), so that it stays within what this machine trains in minutes;
it must hold at least `--min-nodes` nodes. Pairs are one per distinct description (a -dbg or -doc
package often repeats its parent's text), the long text cut to its first paragraph;
no short or long text appears twice (retrieval would have two right answers).
"""
from __future__ import annotations

import argparse
import glob
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

HELPER = "/usr/lib/apt/apt-helper"
EXCLUDED_SECTIONS = {"libs", "libdevel", "oldlibs", "debug"}


def read_list(path: str) -> str:
    if path.endswith((".lz4", ".gz", ".xz", ".bz2", ".zst")):
        return subprocess.run([HELPER, "cat-file", path], check=True, capture_output=True).stdout.decode("utf-8", "replace")
    return Path(path).read_text(encoding="utf-8", errors="replace")


def stanzas(text: str):
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line[1:]
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            yield fields


def dependencies(value: str) -> list[str]:
    out = []
    for group in value.split(","):
        first = group.split("|")[0].strip()
        name = re.split(r"[\s(:\[]", first, maxsplit=1)[0]
        if name:
            out.append(name)
    return out


def maintainer_id(value: str) -> str:
    m = re.search(r"<([^>]+)>", value)
    return (m.group(1) if m else value).strip().lower()


def long_text(desc: str) -> str:
    """The first paragraph of a long description: continuation lines, '.' lines break paragraphs."""
    paras, cur = [], []
    for line in desc.split("\n")[1:]:
        if line.strip() == ".":
            if cur:
                paras.append(" ".join(cur))
                cur = []
        else:
            cur.append(line.strip())
    if cur:
        paras.append(" ".join(cur))
    return paras[0] if paras else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lists", default="/var/lib/apt/lists")
    ap.add_argument("--out", default="bench/data/debian")
    ap.add_argument("--sections", type=int, default=12, help="the largest sections kept in the graph")
    ap.add_argument("--min-nodes", type=int, default=10000)
    ap.add_argument("--min-words", type=int, default=8, help="shortest long description kept as a pair")
    args = ap.parse_args()
    packages = sorted(glob.glob(f"{args.lists}/*_main_binary-amd64_Packages*"))
    translations = sorted(glob.glob(f"{args.lists}/*_main_i18n_Translation-en*"))
    if not packages:
        print(f"no *_Packages lists under {args.lists}: run `apt-get update` first", file=sys.stderr)
        return 1
    pkgs: dict[str, dict[str, str]] = {}
    for path in packages:   # later suites (updates, security) override the release's entries
        for st in stanzas(read_list(path)):
            if "Package" in st:
                pkgs[st["Package"]] = st
    long_by_md5: dict[str, str] = {}
    for path in translations:
        for st in stanzas(read_list(path)):
            if "Description-md5" in st and "Description-en" in st:
                long_by_md5[st["Description-md5"]] = st["Description-en"]
    out = Path(args.out)
    (out / "graph").mkdir(parents=True, exist_ok=True)

    section = {p: st.get("Section", "unknown").split("/")[-1] for p, st in pkgs.items()}
    sizes = Counter(s for s in section.values() if s not in EXCLUDED_SECTIONS)
    kept_sections = {s for s, _ in sizes.most_common(args.sections)}
    nodes = {p for p in pkgs if section[p] in kept_sections}
    adj: dict[str, set[str]] = defaultdict(set)
    for p in nodes:
        st = pkgs[p]
        for d in dependencies(st.get("Depends", "") + "," + st.get("Pre-Depends", "")):
            if d in nodes and d != p:
                adj[p].add(d)
                adj[d].add(p)
    seen, best = set(), []
    for start in sorted(adj):
        if start in seen:
            continue
        comp, stack = [], [start]
        seen.add(start)
        while stack:
            u = stack.pop()
            comp.append(u)
            for v in adj[u]:
                if v not in seen:
                    seen.add(v)
                    stack.append(v)
        if len(comp) > len(best):
            best = comp
    comp = set(best)
    if len(comp) < args.min_nodes:
        print(f"the graph's largest component has {len(comp)} nodes (< --min-nodes {args.min_nodes}); "
              f"raise --sections", file=sys.stderr)
        return 1
    edges = sorted({(min(u, v), max(u, v)) for u in comp for v in adj[u]})
    with open(out / "graph" / "edges.tsv", "w", encoding="utf-8") as f:
        f.write("# package<TAB>dependency, from Debian's apt index (Depends, Pre-Depends)\n")
        f.writelines(f"{u}\t{v}\n" for u, v in edges)
    with open(out / "graph" / "labels.tsv", "w", encoding="utf-8") as f:
        f.writelines(f"{p}\t{section[p]}\n" for p in sorted(comp))
    with open(out / "graph" / "owners.tsv", "w", encoding="utf-8") as f:
        f.writelines(f"{p}\t{maintainer_id(pkgs[p].get('Maintainer', 'unknown'))}\n" for p in sorted(comp))

    pairs, md5s, texts = 0, set(), set()
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as f:
        for p in sorted(pkgs):
            st = pkgs[p]
            md5 = st.get("Description-md5")
            if not md5 or md5 in md5s or md5 not in long_by_md5:
                continue
            md5s.add(md5)
            desc = long_by_md5[md5]
            short, positive = desc.split("\n")[0].strip(), long_text(desc)
            if len(positive.split()) < args.min_words or not short or positive in texts or short in texts:
                continue   # a repeated text would be two right answers in retrieval
            texts.update((short, positive))
            f.write(json.dumps({"client_id": maintainer_id(st.get("Maintainer", "unknown")), "anchor": short,
                                "positive": positive, "package": p}) + "\n")
            pairs += 1
    print(f"graph: {len(comp)} nodes, {len(edges)} edges, {len(kept_sections)} sections "
          f"({', '.join(sorted(kept_sections))}), {len(set(maintainer_id(pkgs[p].get('Maintainer','')) for p in comp))} "
          f"maintainers; pairs: {pairs}; written under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
