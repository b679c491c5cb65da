#!/usr/bin/env bash
# Install the cross-device corpus's sources from Debian and assemble it under bench/data/cross_device/.
#
#   bash bench/get_cross_device.sh                    # -> corpus.jsonl (one user a line), vocab.tsv, manifest.json
#   bash bench/get_cross_device.sh --max-users 100000 --min-tokens 0    # a fixed subset
#
# Real English text, one short text per user (as on phones); figures in docs/BENCHMARKS.md,
# "Cross-device corpus". Nothing is downloaded but these Debian packages, by name, and the
# apt index's English package descriptions (apt-get update -o Acquire::Languages=en, when
# they are not there yet):
#   bible-kjv                 the King James Bible, one user per verse
#   fortunes                  the fortune databases (with fortunes-min), one user per fortune
#   dict-devil dict-foldoc dict-jargon dict-wn   dictd dictionaries, one user per entry (WordNet: per sense)
#   Translation-en            every Debian package's description, one user per description
# gensim's text (fedembed's "builtin" corpus) is left out on purpose: it is the public warm
# start's training text. Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PACKAGES=(bible-kjv fortunes dict-devil dict-foldoc dict-jargon dict-wn)
missing=()
for p in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
translations() {
    apt-get indextargets -o Acquire::Languages=en --format '$(FILENAME)' 'Identifier: Translations' 'Language: en' \
        | while read -r f; do [ -f "$f" ] && echo "$f"; done
}
files="$(translations)"
if ((${#missing[@]})) || [ -z "$files" ]; then
    echo "apt-get update (with English package descriptions)" >&2
    $SUDO apt-get update -q -o Acquire::Languages=en
    files="$(translations)"
fi
if ((${#missing[@]})); then
    echo "installing ${missing[*]} with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ -z "$files" ]; then
    echo "no English package descriptions (Translation-en) in the apt lists after apt-get update" >&2
    exit 1
fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
mapfile -t tr <<<"$files"
exec "$PY" bench/assemble_cross_device.py --out bench/data/cross_device --translations "${tr[@]}" "$@"
