#!/usr/bin/env bash
# Side-by-side CPU training step of a Mixture-of-Experts model, one run, and the cost of the
# expert-parallel all-to-all. The model (bench/pytorch_moe_train_step.py's docstring): 4
# layers, n_embd 256, 4 heads / 2 kv heads, every layer MoE with 16 SwiGLU experts of 128,
# top-2, 1 shared expert, softmax router, balance loss 0.001; T 128, global batch 8, vocab
# 4096, fp32. Runs, interleaved in ROUNDS rounds (a burst of load hits one round):
#   peng:     `peng train`, 1 rank x nproc threads
#   torch-N:  the same model and recipe in PyTorch eager (per-expert loop), N intra-op threads
#   dp2-ep1:  peng, 2 ranks x nproc/2 threads, --dp 2: every rank holds all 16 experts
#   dp2-ep2:  peng, 2 ranks x nproc/2 threads, --dp 2 --ep 2: 8 experts per rank, tokens
#             travel by all_to_all_v; dp2-ep2 - dp2-ep1 is the all-to-all's cost (and the
#             expert gradients' smaller reduction, over 1 rank instead of 2)
# peng's step time: the median step_time_s of the metrics JSONL without the first SKIP steps;
# per configuration the best round (all listed).
#   bash bench/moe_train_step.sh          # STEPS=15 SKIP=3 ROUNDS=3 SECONDS=10 BUILD_DIR=build
set -uo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
steps=${STEPS:-15}
skip=${SKIP:-3}
rounds=${ROUNDS:-3}
secs=${SECONDS_PER_TORCH_RUN:-10}
cores=$(nproc)
half=$((cores / 2 > 0 ? cores / 2 : 1))
peng="$build/bin/peng"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

source bench/build_target.sh
build_target "$build" peng "$peng"

work=$(mktemp -d /tmp/moe_train_step.XXXXXX)
trap 'rm -rf "$work"' EXIT
B=8 T=128 V=4096
/usr/bin/python3 bench/synthetic_shard.py "$work/tokens.bin" $(( (steps + 2) * B * T + 1 )) $V

common=(train --data "$work/tokens.bin" --model-family deepseek_moe --n-layer 4 --n-head 4
        --n-kv-head 2 --n-embd 256 --vocab-size $V --max-seq-len $T --seq-len $T
        --experts 16 --experts-per-token 2 --expert-ffn 128 --shared-experts 1
        --first-dense-layers 0 --scoring softmax --norm-topk true --aux-loss-alpha 0.001
        --batch-size $B --steps "$steps" --lr 1e-4 --lr-schedule constant --weight-decay 0.1
        --grad-clip 1.0)

echo "# machine: $cores cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(mpirun --version 2>/dev/null | head -1)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average:$(uptime | sed 's/.*load average://')"
echo "# tree: $(git rev-parse --short HEAD 2>/dev/null)"
runs=("peng 1 $cores" "dp2-ep1 2 $half --dp 2" "dp2-ep2 2 $half --dp 2 --ep 2")
for ((round = 0; round < rounds; ++round)); do
  for t in 1 "$cores"; do
    /usr/bin/python3 bench/pytorch_moe_train_step.py --threads "$t" --seconds "$secs" \
      >"$work/torch-$t.$round.json" 2>"$work/torch-$t.$round.log"
  done
  for r in "${runs[@]}"; do
    read -r name np threads extra <<<"$r"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$threads timeout 900 mpirun -np "$np" --oversubscribe --bind-to none \
      -x OMP_NUM_THREADS "$peng" "${common[@]}" $extra --quiet \
      --metrics-jsonl "$work/$name.$round.jsonl" >"$work/$name.$round.log" 2>&1
    echo $? >"$work/$name.$round.rc"
  done
done

/usr/bin/python3 - "$work" "$skip" "$rounds" $((B * T)) "$cores" "$half" <<'PY'
import glob, json, os, statistics, sys
work, skip, rounds, tokens, cores, half = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5], sys.argv[6]

def peng_round(name, k):
    base = os.path.join(work, "%s.%d" % (name, k))
    if int(open(base + ".rc").read()) != 0:
        log = open(base + ".log", errors="replace").read().splitlines()
        return dict(error=next((l for l in log if l.startswith("error:")), log[-1] if log else "?"))
    rows = [json.loads(l) for l in open(base + ".jsonl") if '"step_time_s"' in l][skip:]
    med = lambda key: statistics.median(r[key] for r in rows)
    return dict(step=med("step_time_s"), comm=med("exposed_comm_s"), fwd=med("forward_s"),
                bwd=med("backward_s"), mfu=med("mfu"))

rows = []
for name, shape in (("peng", "1 x " + cores), ("dp2-ep1", "2 x " + half), ("dp2-ep2", "2 x " + half)):
    rs = [peng_round(name, k) for k in range(rounds)]
    ok = [r for r in rs if "step" in r]
    if not ok:
        rows.append((name, shape, None, rs[0].get("error")))
        continue
    rows.append((name, shape, min(ok, key=lambda r: r["step"]), [r["step"] for r in ok]))
torch = {}
for t in (1, int(cores)):
    rs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(work, "torch-%d.*.json" % t)))
          if os.path.getsize(f) > 0]
    if rs:
        torch[t] = (max(rs, key=lambda r: r["tokens_per_s"]), [r["step_ms"] for r in rs])
print()
print("| run | ranks x threads | step ms (best round) | each round (ms) | forward / backward / exposed comm ms | tokens/s |")
print("|---|---|---:|---|---|---:|")
for name, shape, best, each in rows:
    if best is None:
        print("| %s | %s | n/a | %s | | |" % (name, shape, each))
        continue
    print("| %s | %s | %.1f | %s | %.1f / %.1f / %.1f | %.0f |" % (
        "peng" if name == "peng" else "peng " + name, shape, 1e3 * best["step"], ", ".join("%.1f" % (1e3 * s) for s in each),
        1e3 * best["fwd"], 1e3 * best["bwd"], 1e3 * best["comm"], tokens / best["step"]))
for t, (best, each) in sorted(torch.items()):
    print("| PyTorch %s eager | 1 x %d | %.1f | %s | | %.0f |" % (
        best["torch"], t, best["step_ms"], ", ".join("%.1f" % s for s in each), best["tokens_per_s"]))
peng = dict((n, b) for n, _, b, _ in rows)
if peng.get("peng") and torch:
    tb = max((b for b, _ in torch.values()), key=lambda r: r["tokens_per_s"])
    print("\npeng / PyTorch tokens/s: %.2fx (PyTorch's best thread count: %d)" % (
        tokens / peng["peng"]["step"] / tb["tokens_per_s"], tb["threads"]))
if peng.get("dp2-ep1") and peng.get("dp2-ep2"):
    d = peng["dp2-ep2"]["step"] - peng["dp2-ep1"]["step"]
    print("ep 2 vs ep 1 at dp 2 (same global batch): %+.1f ms per step (%+.1f%%)" % (
        1e3 * d, 100 * d / peng["dp2-ep1"]["step"]))
PY
