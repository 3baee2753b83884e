#!/usr/bin/env bash
# What the compute-accounting instrumentation costs per training step, on the CPU
# benchmark model (bench/train_step_bench.cc: GPT-2 4L 4H 256C, vocab 4096, T 128, global
# batch 8, fp32), trained by `peng train` on a synthetic shard for STEPS steps:
#   base: the metrics JSONL only (the sink every run had before the instrumentation)
#   all:  every sink, as often as it goes: TensorBoard and Prometheus (with the per-rank
#         gather) every step, a ledger interval record every second with an HMAC
# each at 1 rank and at 2 ranks (dp 2), interleaved over ROUNDS rounds.
# Two measures per run:
#   - in-run: the time the training loop spent outside the steps, validation and
#     checkpoints (the goodput line's lost_s.other: metrics, sinks, progress line) per
#     second of step time. This is what the sinks add to every step.
#   - end to end: tokens per second of loop time (wall - start-up), all / base, best round.
# The always-on part (the breakdown's clock reads, getrusage) is inside the steps and in
# both configurations; the NVML thread only runs where NVML exists.
#
#   bash bench/telemetry_overhead.sh          # STEPS=40 ROUNDS=3 BUILD_DIR=build
set -uo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
steps=${STEPS:-40}
rounds=${ROUNDS:-3}
cores=$(nproc)
half=$((cores / 2 > 0 ? cores / 2 : 1))
peng="$build/bin/peng"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

source bench/build_target.sh
build_target "$build" peng "$peng"

work=$(mktemp -d /tmp/telemetry_overhead.XXXXXX)
trap 'rm -rf "$work"' EXIT
B=8 T=128 V=4096
/usr/bin/python3 bench/synthetic_shard.py "$work/tokens.bin" $(( (steps + 2) * B * T + 1 )) $V
head -c 32 /dev/urandom >"$work/key"

common=(train --data "$work/tokens.bin" --n-layer 4 --n-head 4 --n-embd 256 --vocab-size $V
        --max-seq-len $T --seq-len $T --steps "$steps" --batch-size $B --lr 1e-4
        --lr-schedule constant --quiet)
echo "# machine: $cores cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(mpirun --version 2>/dev/null | head -1)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average:$(uptime | sed 's/.*load average://')"
echo "# tree: $(git rev-parse --short HEAD 2>/dev/null)$([[ -n $(git status --porcelain 2>/dev/null) ]] && echo " (uncommitted changes)")"
echo "# model: GPT-2 4L 4H 256C vocab $V, T $T, global batch $B, $steps steps, $rounds rounds"
echo "# base: $peng ${common[*]} --metrics-jsonl M"
echo "# all:  base + --tensorboard DIR --prometheus-textfile F --ledger L --ledger-key K --ledger-every 1 --export-every 1"

for ((round = 0; round < rounds; ++round)); do
  for np in 1 2; do
    threads=$([[ $np == 1 ]] && echo "$cores" || echo "$half")
    dp=(); [[ $np == 2 ]] && dp=(--dp 2)
    for cfg in base all; do
      out="$work/$cfg.np$np.$round"
      extra=()
      [[ $cfg == all ]] && extra=(--tensorboard "$out.tb" --prometheus-textfile "$out.prom"
                                 --ledger "$out.ledger" --ledger-key "$work/key"
                                 --ledger-every 1 --export-every 1)
      OMP_NUM_THREADS=$threads timeout 900 mpirun -np "$np" --oversubscribe --bind-to none \
        -x OMP_NUM_THREADS "$peng" "${common[@]}" "${dp[@]}" --metrics-jsonl "$out.jsonl" \
        "${extra[@]}" >"$out.log" 2>&1 || { echo "error: $cfg np $np failed:"; tail -3 "$out.log"; }
    done
  done
done

/usr/bin/python3 - "$work" "$rounds" "$steps" $((B * T)) <<'PY'
import json, sys
work, rounds, steps, tokens_per_step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def run(cfg, np, r):
    lines = [json.loads(l) for l in open("%s/%s.np%d.%d.jsonl" % (work, cfg, np, r))]
    g = lines[-1]["goodput"]
    step_s = sum(l["step_time_s"] for l in lines if "loss" in l)
    loop_s = g["wall_s"] - g["lost_s"]["startup"]
    return {"other_per_step_s": g["lost_s"]["other"] / step_s, "tps": steps * tokens_per_step / loop_s,
            "other_ms_per_step": 1e3 * g["lost_s"]["other"] / steps}
print("| ranks | config | outside-step time / step time (median of rounds) | ms per step | loop tokens/s (best) |")
print("|---:|---|---:|---:|---:|")
best = {}
for np in (1, 2):
    for cfg in ("base", "all"):
        rs = [run(cfg, np, r) for r in range(rounds)]
        med = sorted(x["other_per_step_s"] for x in rs)[rounds // 2]
        ms = sorted(x["other_ms_per_step"] for x in rs)[rounds // 2]
        best[(np, cfg)] = max(x["tps"] for x in rs)
        print("| %d | %s | %.3f%% | %.2f | %.0f |" % (np, cfg, 100 * med, ms, best[(np, cfg)]))
for np in (1, 2):
    print("\n%d rank(s): all / base loop tokens/s (best rounds) = %.4f" % (np, best[(np, "all")] / best[(np, "base")]))
PY
