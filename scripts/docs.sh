#!/usr/bin/env bash
# Builds the API reference (HTML) of peng's public headers with Doxygen, into build/docs/api
# (PENG_DOCS_OUT overrides), and prints the path of its index.html. Any Doxygen warning fails
# the script (WARN_AS_ERROR = FAIL_ON_WARNINGS in docs/Doxyfile). Needs doxygen and python3:
# scripts/doxygen_filter.py turns the headers' `//` comments into Doxygen comments on the fly.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v doxygen >/dev/null || { echo "docs.sh: doxygen not found (apt-get install doxygen)" >&2; exit 1; }
export PENG_DOCS_OUT="$(realpath -m "${PENG_DOCS_OUT:-build/docs/api}")"  # relative: to the repo root
# The interpreter Doxygen runs the filter with, once per header: resolved here, since a
# python3 wrapper (a pyenv shim) would add most of a second to every file.
PENG_DOCS_PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
export PENG_DOCS_PYTHON

rm -rf "$PENG_DOCS_OUT/html"  # no pages left over from removed headers
mkdir -p "$PENG_DOCS_OUT"
doxygen docs/Doxyfile
echo "$PENG_DOCS_OUT/html/index.html"
