#!/usr/bin/env bash
# The node2vec and sentence-encoder benchmarks' data, from Debian's apt index (issue 15):
# refresh the package lists with English long descriptions (Translation-en), then build
# bench/data/debian/{graph/edges.tsv,graph/labels.tsv,graph/owners.tsv,pairs.jsonl}.
# Needs root (apt-get update) and apt's package mirror; nothing else downloads, ever.
set -euo pipefail
cd "$(dirname "$0")/.."
apt-get update -o Acquire::Languages=en >/dev/null
python3 bench/assemble_debian.py --out bench/data/debian "$@"
