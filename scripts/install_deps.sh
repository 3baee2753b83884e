#!/usr/bin/env bash
# Installs peng's build and test dependencies from Debian packages (idempotent).
# Why each one is there: see README.md, "Dependencies".
set -euo pipefail
pkgs=(
  build-essential cmake git pkg-config
  openmpi-bin libopenmpi-dev            # MPI runtime + communicator (CPU collectives, mpirun)
  protobuf-compiler libprotobuf-dev     # config / manifest schemas compiled by protoc
  libopenblas-openmp-dev                # sgemm for the CPU backend (OpenMP build: nests with our OpenMP)
  libgtest-dev libgmock-dev             # unit and integration tests
  libbenchmark-dev                      # bench/ micro-benchmarks
  nlohmann-json3-dev                    # JSON: HF config.json, safetensors headers, metrics JSONL
  libcli11-dev                          # command-line parsing of the peng CLI
  libpcre2-dev                          # pre-tokenizer regexes (Unicode \\p{L}/\\p{N}, lookahead)
  libicu-dev                            # NFC and Unicode classes for Hugging Face tokenizers (Qwen's NFC)
  libxxhash-dev                         # XXH3 checksums of checkpoint chunks and manifests
  clang                                 # libFuzzer targets (tests/fuzz) for the file readers
  libssl-dev                            # SHA-256 hash chain and HMAC-SHA-256 of the usage ledger
  openssl                               # the command line: verifying signed ledgers without peng (docs/VERIFYING.md)
  chromium                              # headless rendering test of the HTML usage report
  fonts-wqy-microhei                    # a CJK font: Chromium renders the certificate's Chinese labels
  doxygen                               # API reference from the public headers (docs/api, checked in CI)

)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# npm (with Node.js) fetches the corpus and the BPE files; many images ship their own.
if ! command -v npm >/dev/null 2>&1; then
  ${SUDO:-} apt-get install -y -qq --no-install-recommends npm
fi
