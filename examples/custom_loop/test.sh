#!/usr/bin/env bash
# custom_loop reports the losses and gradient norms of `peng train` with the same model,
# initialisation, data and recipe, on one rank and on two.
#   test.sh CUSTOM_LOOP PENG MPIEXEC
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
loop=$1 peng=$2 mpiexec=$3
tokens=$here/../custom_layer/reference/tokens.bin  # 769 tokens, ids < 256
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
"$peng" train --model-family llama --n-layer 2 --n-head 4 --n-kv-head 2 --n-embd 64 \
  --ffn-hidden 160 --vocab-size 256 --seed 8 --data "$tokens" --batch-size 8 --seq-len 16 --steps 8 \
  --lr 1e-3 --lr-schedule constant --weight-decay 0.1 --grad-clip 1.0 --quiet \
  --metrics-jsonl "$tmp/peng.jsonl"
for np in 1 2; do
  "$mpiexec" -n "$np" --oversubscribe --bind-to none "$loop" "$tokens" 8 "$tmp/loop$np.jsonl"
  python3 "$here/../compare_losses.py" "$tmp/loop$np.jsonl" "$tmp/peng.jsonl" \
    --loss-rtol 1e-5 --norm-rtol 1e-5
done
