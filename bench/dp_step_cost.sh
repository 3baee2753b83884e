#!/usr/bin/env bash
# Per-step cost of data parallelism on the CPU benchmark model (the model of
# bench/train_step_bench.cc: GPT-2, 4 layers, 4 heads, n_embd 256, T 128, global batch 8,
# vocab 4096, fp32), trained by `peng train` for STEPS steps on a synthetic token shard:
#   dp1:    mpirun -np 1, OMP_NUM_THREADS = nproc
#   dp2*:   mpirun -np 2, OMP_NUM_THREADS = nproc / 2 per rank, the same global batch (each
#           rank does half the sequences), at --zero 0, 1 and 2, with 1 MB buckets, and
#           with the gradients reduced in bf16 (--grad-reduce-dtype bf16)
#   nocomm: two independent single-rank jobs side by side, each with half the batch and
#           half the cores: dp 2's compute without any communication, so dp2 - nocomm is
#           the cost of the gradient reduction and of the ranks waiting for each other
# Every run uses all cores (--bind-to none: Open MPI's default binds a lone rank to one
# core, which would put dp1's threads on one core). The configurations run in ROUNDS
# interleaved rounds (nocomm, dp1, dp2, zero1, zero2, then again), so a burst of load from
# other processes on a shared machine hits one round, not one configuration.
# Per run: the median step_time_s of the metrics JSONL without the first SKIP steps (and of
# exposed_comm_s, the step's wait on collectives, and bucket_comm_s, the gradient buckets'
# communication time, hidden or not: `hidden` = 1 - exposed / bucket, a lower bound on the
# share of bucket communication backward hid, since exposed_comm_s holds other waits); per
# configuration the best round is reported (all rounds listed), with tokens/s, the ratio to
# dp1's best round, and the largest relative loss difference to dp1 (the numerics contract
# says < 1e-4). A run that fails (a --zero stage this build refuses, say) is reported "n/a"
# with its error line.
#
# DEVICE=cuda runs every job on the GPU(s) with --comm staged: dp 2 shares one GPU (the
# staged path: device tensors through host memory over MPI), against dp 1 on it.
#
#   bash bench/dp_step_cost.sh                # STEPS=20 SKIP=3 ROUNDS=3 BUILD_DIR=build DEVICE=cpu
#   STEPS=30 ROUNDS=5 BUILD_DIR=build-bench bash bench/dp_step_cost.sh
#   DEVICE=cuda PENG=build-gpu/bundle/bin/peng bash bench/dp_step_cost.sh   # on a GPU machine
set -uo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
steps=${STEPS:-20}
skip=${SKIP:-3}
rounds=${ROUNDS:-3}
cores=$(nproc)
half=$((cores / 2 > 0 ? cores / 2 : 1))
device=${DEVICE:-cpu}
peng=${PENG:-$build/bin/peng}
mpirun=${PENG_TEST_MPIEXEC:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [[ -z ${PENG:-} ]]; then
  source bench/build_target.sh
  build_target "$build" peng "$peng"
fi

work=$(mktemp -d /tmp/dp_step_cost.XXXXXX)
trap 'rm -rf "$work"' EXIT
B=8 T=128 V=4096
# Synthetic llm.c shard (version 1, uint16 tokens < V), enough for every step's batch.
"${PYTHON:-/usr/bin/python3}" bench/synthetic_shard.py "$work/tokens.bin" $(( (steps + 2) * B * T + 1 )) $V

common=(train --data "$work/tokens.bin" --n-layer 4 --n-head 4 --n-embd 256 --vocab-size $V
        --max-seq-len $T --seq-len $T --steps "$steps" --lr 1e-4 --lr-schedule constant
        --weight-decay 0.1 --grad-clip 1.0)
[[ $device == cuda ]] && common+=(--device cuda --comm staged)

echo "# machine: $cores cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $("$mpirun" --version 2>/dev/null | head -1)"
[[ $device == cuda ]] && echo "# device: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), every job --device cuda --comm staged"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average:$(uptime | sed 's/.*load average://')"
dirty=$(git status --porcelain -- core parallel optim models launch 2>/dev/null | wc -l)
echo "# tree: $(git rev-parse --short HEAD 2>/dev/null)$([[ $dirty -gt 0 ]] && echo " ($dirty files changed under core/ parallel/ optim/ models/ launch/)")"
echo "# model: GPT-2 4L 4H 256C vocab $V, T $T, global batch $B ($((B * T)) tokens/step), $steps steps, median without the first $skip, best of $rounds rounds"
echo "# nocomm: 2 x (OMP_NUM_THREADS=$half mpirun -np 1 --bind-to none $peng train ... --batch-size $((B / 2))) side by side"

# name np threads extra-flags...
runs=("dp1 1 $cores"
      "dp2 2 $half --dp 2 --zero 0"
      "dp2-1mb 2 $half --dp 2 --zero 0 --bucket-mb 1"
      "dp2-zero1 2 $half --dp 2 --zero 1"
      "dp2-zero2 2 $half --dp 2 --zero 2"
      "dp2-bf16 2 $half --dp 2 --zero 0 --grad-reduce-dtype bf16")
for r in "${runs[@]}"; do
  read -r name np threads extra <<<"$r"
  echo "# $name: OMP_NUM_THREADS=$threads mpirun -np $np --bind-to none $peng train ... --batch-size $B $extra"
done

for ((round = 0; round < rounds; ++round)); do
  for i in 0 1; do
    OMP_NUM_THREADS=$half timeout 900 "$mpirun" -np 1 --bind-to none -x OMP_NUM_THREADS "$peng" \
      "${common[@]}" --batch-size $((B / 2)) --metrics-jsonl "$work/nocomm.$round.$i.jsonl" \
      >"$work/nocomm.$round.$i.log" 2>&1 &
  done
  wait
  for r in "${runs[@]}"; do
    read -r name np threads extra <<<"$r"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$threads timeout 900 "$mpirun" -np "$np" --oversubscribe --bind-to none \
      -x OMP_NUM_THREADS "$peng" "${common[@]}" --batch-size $B $extra \
      --metrics-jsonl "$work/$name.$round.jsonl" >"$work/$name.$round.log" 2>&1
    echo $? >"$work/$name.$round.rc"
  done
done

"${PYTHON:-/usr/bin/python3}" - "$work" "$skip" "$rounds" $((B * T)) "$half" "${runs[@]}" <<'PY'
import json, os, statistics, sys
work, skip, rounds, tokens, half = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
runs = [r.split()[:3] for r in sys.argv[6:]]

def step_rows(path):
    if not os.path.exists(path):
        return []
    rows = [json.loads(l) for l in open(path) if l.strip()]
    return [r for r in rows if "step_time_s" in r]

def median_time(rows, key="step_time_s"):
    t = [r[key] for r in rows[skip:] if key in r]
    return statistics.median(t) if t else None

results = {}
# nocomm: per round, the slower of the two side-by-side jobs.
meds = []
for k in range(rounds):
    m = [median_time(step_rows(os.path.join(work, "nocomm.%d.%d.jsonl" % (k, i)))) for i in (0, 1)]
    if None not in m:
        meds.append(max(m))
if meds:
    results["nocomm"] = dict(meds=meds)
for name, np_, threads in runs:
    meds, comms, buckets, losses, error = [], [], [], None, None
    for k in range(rounds):
        base = os.path.join(work, "%s.%d" % (name, k))
        rc = int(open(base + ".rc").read())
        rows = step_rows(base + ".jsonl")
        if rc != 0 or len(rows) <= skip:
            log = open(base + ".log", errors="replace").read().splitlines()
            err = next((l for l in log if l.startswith("error:")), None)
            error = "timed out after 900 s" if rc == 124 else (err or (log[-1] if log else "exit %d" % rc))
            continue
        meds.append(median_time(rows))
        comms.append(median_time(rows, "exposed_comm_s"))
        buckets.append(median_time(rows, "bucket_comm_s"))
        losses = {r["step"]: r["loss"] for r in rows}
    results[name] = dict(meds=meds, comms=comms, buckets=buckets, losses=losses, error=error)

table = [("dp1", "1 x %s" % runs[0][2]), ("nocomm", "2 jobs x %s" % half)] + \
        [(n, "%s x %s" % (p, t)) for n, p, t in runs[1:]]
base = results.get("dp1", {})
base_best = min(base["meds"]) if base.get("meds") else None
print()
print("| run | ranks x threads | step ms (best round) | step ms (each round) | exposed comm ms | bucket comm ms | hidden | tokens/s | step time / dp1 | max rel. loss diff vs dp1 |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
for name, shape in table:
    r = results.get(name)
    if not r:
        continue
    if not r["meds"]:
        print("| %s | %s | n/a | | n/a | n/a | n/a | n/a | n/a | %s |" % (name, shape, (r.get("error") or "no data").replace("|", "/")))
        continue
    best = min(r["meds"])
    # exposed_comm_s (the step's wait on collectives, when the trainer reports it), best round
    at = r["meds"].index(best)
    comm = r.get("comms", [None] * len(r["meds"]))[at]
    bucket = r.get("buckets", [None] * len(r["meds"]))[at]
    hidden = "%.0f%%" % (100 * max(0.0, 1 - comm / bucket)) if comm is not None and bucket else "-"
    bucket = "%.1f" % (1e3 * bucket) if bucket is not None else "-"
    comm = "%.1f" % (1e3 * comm) if comm is not None else "-"
    each = ", ".join("%.1f" % (1e3 * m) for m in r["meds"])
    if r.get("error"):
        each += " (a round failed: %s)" % r["error"].replace("|", "/")
    ratio = "%.2fx" % (best / base_best) if base_best else "n/a"
    diff = "-"
    if name not in ("dp1", "nocomm") and base.get("losses") and r.get("losses"):
        common = [s for s in r["losses"] if s in base["losses"]]
        diff = "%.1e" % max(abs(r["losses"][s] - base["losses"][s]) / abs(base["losses"][s]) for s in common)
    print("| %s | %s | %.1f | %s | %s | %s | %s | %.0f | %s | %s |" % (name, shape, 1e3 * best, each, comm, bucket, hidden, tokens / best, ratio, diff))
PY
for r in "${runs[@]}"; do
  read -r name _ <<<"$r"
  head_line=$(grep -m1 '^peng: GPT-2' "$work/$name.0.log" 2>/dev/null)
  [[ -n "$head_line" ]] && echo "# $name: $head_line"
done
exit 0
