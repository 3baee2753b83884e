#!/usr/bin/env bash
# Pipeline stage balance: `peng train` at pp 2 (1F1B, m micro-batches of 1 sequence) on an
# 8-layer GPT-2 (4 heads, n_embd 256, T 128, fp32, 1 OpenMP thread per rank) with the last
# stage carrying the LM head and the loss, at vocabulary 4096 and 32768, with the even split
# (4,4) against --pp-balance auto (the split layer_costs() balances, printed by peng).
# Measured: the median over steps (without the first SKIP) of the metrics JSONL's
# `pp_bubble` and of the step time; beside them the predicted bubble (check_schedule with
# each stage weighted by its cost, from peng's start-up line) and the ideal for equal
# stages, (p-1)/(m+p-1).
#
#   bash bench/pipeline_balance.sh            # STEPS=12 SKIP=2 M=8 BUILD_DIR=build
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
steps=${STEPS:-12}
skip=${SKIP:-2}
m=${M:-8}
peng=$build/bin/peng
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
source bench/build_target.sh
build_target "$build" peng "$peng"

work=$(mktemp -d /tmp/pipeline_balance.XXXXXX)
trap 'rm -rf "$work"' EXIT
T=128
echo "# machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(mpirun --version 2>/dev/null | head -1)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); tree $(git rev-parse --short HEAD 2>/dev/null)"
echo "# model: GPT-2 8L 4H 256C, T $T, micro-batch 1, m $m, pp 2 1F1B, $steps steps, median without the first $skip"
echo
echo "| vocab | split | stages (layers) | forward cost (relative) | predicted bubble | measured bubble | ideal | step ms |"
echo "|---:|---|---|---|---:|---:|---:|---:|"
for V in 4096 32768; do
  /usr/bin/python3 bench/synthetic_shard.py "$work/tokens.$V.bin" $(( (steps + 2) * m * T + 1 )) $V
  for balance in even auto; do
    out=$work/$V.$balance.jsonl
    mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 "$peng" train --data "$work/tokens.$V.bin" \
      --n-layer 8 --n-head 4 --n-embd 256 --vocab-size $V --max-seq-len $T --seq-len $T \
      --batch-size "$m" --micro-batch-size 1 --steps "$steps" --lr 1e-4 --pp 2 \
      --pp-balance $balance --metrics-jsonl "$out" --log-every 1000 >"$work/log" 2>&1 ||
      { cat "$work/log" >&2; exit 1; }
    /usr/bin/python3 - "$out" "$skip" "$m" "$V" "$balance" "$work/log" <<'PY'
import json, re, statistics, sys
path, skip, m, vocab, balance, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
rows = [json.loads(l) for l in open(path) if '"loss"' in l][skip:]
line = next(l for l in open(log) if l.startswith("pipeline stages:"))
layers = re.search(r"layers (\S+)", line).group(1)
cost = re.search(r"forward cost ([\d. ]+) \(relative\)", line).group(1).strip()
predicted = re.search(r"predicted bubble ([\d.]+)", line).group(1)
bubble = statistics.median(r["pp_bubble"] for r in rows)
step = statistics.median(r["step_time_s"] for r in rows) * 1e3
print(f"| {vocab} | {balance} | {layers} | {cost} | {predicted} | {bubble:.3f} | {1 / (m + 1):.3f} | {step:.1f} |")
PY
  done
done
