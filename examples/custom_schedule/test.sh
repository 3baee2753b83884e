#!/usr/bin/env bash
# eager-1f1b trains to the built-in 1F1B's losses and gradient norms (pp 2 and pp 4, 4
# micro-batches), and its printed schedule passes the check.
#   test.sh CUSTOM_SCHEDULE MPIEXEC
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1 mpiexec=$2
tokens=$here/../custom_layer/reference/tokens.bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
"$bin" --print 4 4 | tee "$tmp/print.txt"
grep -q '^rank 3:' "$tmp/print.txt"
args=(--model-family llama --n-layer 4 --n-head 4 --n-kv-head 2 --n-embd 64 --ffn-hidden 160
      --vocab-size 256 --data "$tokens" --batch-size 4 --micro-batch-size 1 --seq-len 16
      --steps 6 --lr 1e-3 --lr-schedule constant --quiet)
for pp in 2 4; do
  for s in 1f1b eager-1f1b; do
    "$mpiexec" -n "$pp" --oversubscribe --bind-to none "$bin" "${args[@]}" --pp "$pp" \
      --pp-schedule "$s" --metrics-jsonl "$tmp/$s-$pp.jsonl"
  done
  python3 "$here/../compare_losses.py" "$tmp/eager-1f1b-$pp.jsonl" "$tmp/1f1b-$pp.jsonl" \
    --loss-rtol 1e-6 --norm-rtol 1e-6
done
