#!/usr/bin/env bash
# Pipeline bubble of peng's schedules, measured against the ideal: `peng train` at pp 2 on
# a 4-layer GPT-2 (4 heads, n_embd 256, T 128, vocab 4096, fp32, micro-batches of 1
# sequence, 1 OpenMP thread per rank), for GPipe, 1F1B and interleaved 1F1B (2 virtual
# stages) at m micro-batches per step. Measured: the median over steps (without the first
# SKIP) of the metrics JSONL's `pp_bubble`, the pipeline ranks' mean fraction of the step
# spent waiting on transfers. Ideal (equal stage costs, free transfers): GPipe and 1F1B
# (p-1)/(m+p-1), interleaved (p-1)/(v*m+p-1).
# peng's runner recomputes a stage's forward before a backward whose activations were
# overwritten (launch/pipeline_runner.h), so stages do not cost the same: expect more than
# the ideal where that happens (every 1F1B stage but the last; GPipe all but the last
# micro-batch).
#
#   bash bench/pipeline_bubble.sh            # STEPS=12 SKIP=2 MS="2 4 8" BUILD_DIR=build
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
steps=${STEPS:-12}
skip=${SKIP:-2}
ms=${MS:-"2 4 8"}
peng=$build/bin/peng
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
source bench/build_target.sh
build_target "$build" peng "$peng"

work=$(mktemp -d /tmp/pipeline_bubble.XXXXXX)
trap 'rm -rf "$work"' EXIT
T=128 V=4096
/usr/bin/python3 bench/synthetic_shard.py "$work/tokens.bin" $(( (steps + 2) * 8 * T + 1 )) $V

echo "# machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(mpirun --version 2>/dev/null | head -1)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); tree $(git rev-parse --short HEAD 2>/dev/null)"
echo "# model: GPT-2 4L 4H 256C vocab $V, T $T, micro-batch 1, pp 2, $steps steps, median without the first $skip"
echo
echo "| schedule | m | measured bubble | ideal | step ms |"
echo "|---|---:|---:|---:|---:|"
for m in $ms; do
  for sched in gpipe 1f1b interleaved; do
    v=1
    [[ $sched == interleaved ]] && v=2
    out=$work/$sched.$m.jsonl
    if ! mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 "$peng" train --data "$work/tokens.bin" \
        --n-layer 4 --n-head 4 --n-embd 256 --vocab-size $V --max-seq-len $T --seq-len $T \
        --batch-size "$m" --micro-batch-size 1 --steps "$steps" --lr 1e-4 --pp 2 \
        --pp-schedule $sched --virtual-stages $v --metrics-jsonl "$out" --quiet \
        >"$work/log" 2>&1; then
      echo "| $sched | $m | n/a: $(grep -m1 '^error:' "$work/log") | | |"
      continue
    fi
    /usr/bin/python3 - "$out" "$skip" "$m" "$v" "$sched" <<'PY'
import json, statistics, sys
path, skip, m, v, sched = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rows = [json.loads(l) for l in open(path) if '"loss"' in l][skip:]
p = 2
ideal = (p - 1) / (v * m + p - 1)
bubble = statistics.median(r["pp_bubble"] for r in rows)
step = statistics.median(r["step_time_s"] for r in rows) * 1e3
name = sched + (" (v 2)" if v > 1 else "")
print(f"| {name} | {m} | {bubble:.3f} | {ideal:.3f} | {step:.1f} |")
PY
  done
done
