#!/usr/bin/env bash
# train_relu2 reproduces reference/expected.json (PyTorch, float64; the reference contract's
# tolerances) on one process, with tp 2 + sequence parallelism and with pp 2.
#   test.sh TRAIN_RELU2 MPIEXEC
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1 mpiexec=$2
ref=$here/reference
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
args=(--init-from "$ref" --data "$ref/tokens.bin" --batch-size 4 --seq-len 16 --steps 12
      --lr 1e-3 --lr-schedule constant --weight-decay 0.1 --grad-clip 1.0 --quiet)
run() {  # NAME NP FLAGS...
  local name=$1 np=$2
  shift 2
  "$mpiexec" -n "$np" --oversubscribe --bind-to none "$bin" "${args[@]}" "$@" \
    --metrics-jsonl "$tmp/$name.jsonl"
  python3 "$here/../compare_losses.py" "$tmp/$name.jsonl" "$ref/expected.json"
}
run single 1
run tp2 2 --tp 2 --sequence-parallel
run pp2 2 --pp 2 --micro-batch-size 1
