#!/usr/bin/env bash
# Side-by-side CPU training-step benchmark, one run: peng's step of each CPU benchmark model
# (GPT-2 and Llama-shaped), the same model and recipe in PyTorch eager at its best thread
# setting (1 and `nproc` intra-op threads are both measured; with Debian's OpenMP OpenBLAS,
# torch's thread count also bounds BLAS's), and the machine's sgemm ceiling. Prints a table
# per model for docs/PERFORMANCE.md.
#   bash bench/cpu_train_step.sh [seconds per measurement, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bash scripts/build.sh >/dev/null
peng_json=$(build/bin/train_step_bench --benchmark_min_time="$secs" --benchmark_format=json 2>/dev/null)
torch_json="["
for model in gpt2 llama; do
  for t in 1 $(nproc); do
    torch_json+=$(/usr/bin/python3 bench/pytorch_train_step.py --model "$model" --threads "$t" --seconds "$secs"),
  done
done
torch_json="${torch_json%,}]"
/usr/bin/python3 - "$peng_json" "$torch_json" <<'PY'
import json, sys
peng = {b["name"].split("/")[0]: b for b in json.loads(sys.argv[1])["benchmarks"]}
torch_runs = json.loads(sys.argv[2])
ceiling = peng["BM_SgemmCeiling"]["flops"]
for model, bench in (("gpt2", "BM_TrainStep"), ("llama", "BM_LlamaTrainStep")):
    runs = [r for r in torch_runs if r["model"] == model]
    print("\n## %s" % model)
    for r in runs:
        print("PyTorch, %d intra-op threads: %.0f tokens/s" % (r["threads"], r["tokens_per_s"]))
    torch = max(runs, key=lambda r: r["tokens_per_s"])
    step = peng[bench]
    rows = [("sgemm ceiling (OpenBLAS 2048^3)", None, ceiling),
            ("peng train step", step["tokens_per_s"], step["model_flops"]),
            ("PyTorch %s eager train step (%d threads)" % (torch["torch"], torch["threads"]), torch["tokens_per_s"], torch["model_flops"])]
    print()
    print("| run | tokens/s | model GFLOP/s | % of sgemm ceiling |")
    print("|---|---:|---:|---:|")
    for name, tps, fl in rows:
        print("| %s | %s | %.1f | %.0f%% |" % (name, "-" if tps is None else "%.0f" % tps, fl / 1e9, 100 * fl / ceiling))
    print("\npeng / PyTorch tokens/s: %.2fx" % (step["tokens_per_s"] / torch["tokens_per_s"]))
PY
