#!/usr/bin/env bash
# Step time and peak memory of each activation-recomputation policy, one run: a deeper CPU
# benchmark model (Llama-shaped: 8 layers, n_embd 512, 8 heads / 4 kv heads, SwiGLU 1408,
# T 256, global batch 8 in one micro-batch, vocab 4096, fp32) trained by `peng train` for
# STEPS steps on a synthetic shard, once per policy, in ROUNDS interleaved rounds. Per run:
# the median step_time_s without the first SKIP steps, and the process's peak RSS
# (mem_high_water_bytes of the last step line: parameters, gradients, AdamW state and the
# activations of the step, plus the runtime). The activation memory a policy saves is the
# drop in peak RSS from `none`.
#   bash bench/recompute_cost.sh          # STEPS=6 SKIP=2 ROUNDS=2 BUILD_DIR=build
set -uo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
steps=${STEPS:-6}
skip=${SKIP:-2}
rounds=${ROUNDS:-2}
peng="$build/bin/peng"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
source bench/build_target.sh
build_target "$build" peng "$peng"
work=$(mktemp -d /tmp/recompute_cost.XXXXXX)
trap 'rm -rf "$work"' EXIT
B=8 T=256 V=4096
/usr/bin/python3 bench/synthetic_shard.py "$work/tokens.bin" $(( (steps + 2) * B * T + 1 )) $V
common=(train --data "$work/tokens.bin" --model-family llama --n-layer 8 --n-head 8 --n-kv-head 4
        --n-embd 512 --ffn-hidden 1408 --vocab-size $V --max-seq-len $T --seq-len $T
        --batch-size $B --steps "$steps" --lr 1e-4 --lr-schedule constant --quiet)
echo "# machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); tree: $(git rev-parse --short HEAD)"
policies=("none" "selective:core_attn" "selective:core_attn,mlp_act,norm" "full")
for ((round = 0; round < rounds; ++round)); do
  for p in "${policies[@]}"; do
    mode=${p%%:*} modules=${p#*:}
    flags=(--recompute "$mode")
    [[ $mode == selective ]] && flags+=(--recompute-modules "$modules")
    timeout 900 "$peng" "${common[@]}" "${flags[@]}" --metrics-jsonl "$work/$p.$round.jsonl" \
      >"$work/$p.$round.log" 2>&1 || tail -3 "$work/$p.$round.log"
  done
done
/usr/bin/python3 - "$work" "$skip" "$rounds" "${policies[@]}" <<'PY'
import json, os, statistics, sys
work, skip, rounds, policies = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
rows = {}
for p in policies:
    steps, mems = [], []
    for k in range(rounds):
        f = os.path.join(work, "%s.%d.jsonl" % (p, k))
        lines = [json.loads(l) for l in open(f) if '"step_time_s"' in l] if os.path.exists(f) else []
        if len(lines) > skip:
            steps.append(statistics.median(l["step_time_s"] for l in lines[skip:]))
            mems.append(lines[-1]["mem_high_water_bytes"])
    rows[p] = (steps, mems)
base_t, base_m = min(rows["none"][0]), min(rows["none"][1])
print("| policy | step s (best round) | each round | step time / none | peak RSS MiB | saved vs none MiB |")
print("|---|---:|---|---:|---:|---:|")
for p in policies:
    steps, mems = rows[p]
    if not steps:
        print("| %s | n/a | | | | |" % p); continue
    t, m = min(steps), min(mems)
    print("| %s | %.3f | %s | %.2fx | %.0f | %.0f |" % (p.replace(":", " "), t, ", ".join("%.3f" % s for s in steps),
          t / base_t, m / 2**20, (base_m - m) / 2**20))
PY
