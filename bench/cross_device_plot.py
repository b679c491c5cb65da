"""docs/img/privacy_utility_100k.png from bench/out/cross_device/results.jsonl (bench/cross_device.py).

    python bench/cross_device_plot.py [--out docs/img/privacy_utility_100k.png]

One bar group per point (WordSim353, SimLex999, neighbour overlap), the public warm start alone and
gensim trained centrally as horizontal lines: what the private data added, and what it cost.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(ROOT / "bench" / "out" / "cross_device" / "results.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "privacy_utility_100k.png"))
    args = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = {}
    for line in Path(args.results).read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        rows[r["name"]] = r                      # the latest line of a name wins
    rows = [r for r in rows.values() if not r["name"].startswith("k1_")]
    rows.sort(key=lambda r: (-(r["epsilon"] or 1e9), r["name"]))
    labels = [r["name"] + "\nε = " + ("∞" if r["epsilon"] is None else format(r["epsilon"], ".3g")) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=False)
    for ax, key, title in zip(axes, ("wordsim353", "simlex999", "neighbour_overlap"),
                              ("WordSim353 (Spearman)", "SimLex999 (Spearman)", "neighbour overlap with gensim")):
        vals = [r.get(key) or 0.0 for r in rows]
        ax.bar(np.arange(len(rows)), vals, color="#4a7ab5")
        public = rows[0]["public_only"].get(key)
        if public is not None:
            ax.axhline(public, color="#c0504d", linestyle="--", label="public warm start alone")
        gensim = rows[0]["gensim"].get(key)
        if gensim is not None:
            ax.axhline(gensim, color="#333333", linestyle=":", label="gensim, centralized")
        ax.set_xticks(np.arange(len(rows)), labels, rotation=70, fontsize=7)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle("100,000 users, ~2,000 a round, 100 rounds, user-level DP (δ = 1e-6) — bench/cross_device.py")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
