#!/usr/bin/env bash
# Install the benchmark corpus from Debian packages and assemble it under bench/data/.
#
#   bash bench/get_corpus.sh            # -> bench/data/corpus/ (514 files, 1.73M tokens) + bench/data/vocab.tsv
#
# Sources (nothing is downloaded but these Debian packages, by name):
#   bible-kjv   the King James Bible (with bible-kjv-text), ~0.79M tokens, 66 books
#   fortunes    the fortune-cookie databases (with fortunes-min), ~0.43M tokens, 42 topic files
# plus the text gensim already installs (fedembed's "builtin" corpus: the Lee news corpus
# and a Wikipedia sample, ~0.51M tokens, 406 articles). Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(bible-kjv fortunes)
missing=()
for p in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing ${missing[*]} with apt-get" >&2
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec "$PY" bench/assemble_corpus.py --out bench/data/corpus "$@"
