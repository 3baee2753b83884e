#!/usr/bin/env bash
# Memory per rank, measured against the start-up prediction (launch/memory_plan.h) and the
# ideal, one run: a 12-layer CPU benchmark model (Llama-shaped: n_embd 512, 8 heads / 4 kv
# heads, SwiGLU 1408, vocab 4096, T 256, global batch 8, fp32) trained by `peng train` on a
# synthetic shard for STEPS steps:
#   - activations: one process, each recompute policy; measured = what the model keeps
#     after a forward (activation_bytes of the metrics), predicted = the start-up line;
#   - state (values, gradients, AdamW moments): ZeRO 0/1/2/3 at dp 1, 2 and 4 under mpirun;
#     measured = the bytes allocated (state_bytes), predicted = the start-up line, ideal =
#     ZeRO 0's / dp for each sharded term; ZeRO-3 also reports its most gathered bytes;
#   - step time: ZeRO 3 against ZeRO 1 at dp 2 and 4 (median step_time_s after SKIP steps;
#     2 cores: every rank shares them, so only the ratio means something).
# Writes the tables to stdout and, with PLOT=path.png, a plot (python3-matplotlib).
#   bash bench/memory_plan.sh        # STEPS=4 SKIP=1 BUILD_DIR=build PLOT=
set -uo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
steps=${STEPS:-4}
skip=${SKIP:-1}
peng="$build/bin/peng"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
source bench/build_target.sh
build_target "$build" peng "$peng"
work=$(mktemp -d /tmp/memory_plan.XXXXXX)
trap 'rm -rf "$work"' EXIT
B=8 T=256 V=4096
/usr/bin/python3 bench/synthetic_shard.py "$work/tokens.bin" $(( (steps + 2) * B * T + 1 )) $V
common=(train --data "$work/tokens.bin" --model-family llama --n-layer 12 --n-head 8
        --n-kv-head 4 --n-embd 512 --ffn-hidden 1408 --vocab-size $V --max-seq-len $T
        --seq-len $T --batch-size $B --steps "$steps" --lr 1e-4 --lr-schedule constant --quiet)
echo "# machine: $(getconf _NPROCESSORS_ONLN) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); tree: $(git rev-parse --short HEAD)"
run() {  # run NAME NP FLAGS...: the metrics in NAME.jsonl, stdout in NAME.log
  local name=$1 np=$2
  shift 2
  local launcher=()
  ((np > 1)) && launcher=(mpirun -n "$np" --oversubscribe --bind-to none)
  timeout 1200 "${launcher[@]}" "$peng" "${common[@]}" "$@" --metrics-jsonl "$work/$name.jsonl" \
    >"$work/$name.log" 2>&1 || tail -3 "$work/$name.log"
}
policies=("none" "selective:core_attn" "selective:mlp_act" "selective:norm"
          "selective:core_attn,mlp_act,norm" "full")
for p in "${policies[@]}"; do
  mode=${p%%:*} modules=${p#*:}
  flags=(--recompute "$mode")
  [[ $mode == selective ]] && flags+=(--recompute-modules "$modules")
  run "act-$p" 1 "${flags[@]}"
done
run "zero0-dp1" 1
for dp in 2 4; do
  for zero in 0 1 2 3; do run "zero$zero-dp$dp" "$dp" --dp "$dp" --zero "$zero"; done
done
/usr/bin/python3 bench/memory_plan_report.py "$work" "$skip" "${PLOT:-}" "${policies[@]}"
