#!/usr/bin/env bash
# GPU training-step benchmark of issue 14 ("Speed"), one call: peng and PyTorch on the same
# model and batch, one after the other on the same GPU, then a markdown table (printed last).
#
#   bash bench/gpu_train_step.sh PENG_BIN OUT_DIR [--steps N] [--warmup N] [--models LIST]
#
# Runs, for each model and precision:
#   gpt2-124m  bf16 and fp32  GPT-2 small (12 layers, 12 heads, n_embd 768, vocab 50257),
#                             T 1024, micro-batch 16 (one micro-batch per step), 30 timed steps
#   llama-1b   bf16           Llama-3.2-1B (peng's llama3.2-1b preset, shape restated in
#                             flags: 16 layers, n_embd 2048, 32/8 heads of 64, SwiGLU 8192,
#                             vocab 128256, tied), T 1024, micro-batch 8, 20 timed steps
#   (a) peng:    PENG_BIN train --device cuda --precision P <model flags> on a synthetic
#                token shard of the model's vocabulary (OUT_DIR/data/), AdamW lr 3e-4,
#                betas 0.9/0.95, weight decay 0.1, clip 1.0, constant lr, --peak set to the
#                PyTorch peer's peak; metrics in OUT_DIR/<model>-<P>/metrics.jsonl. Its
#                figures: the medians of tokens_per_s and mfu over the step lines after the
#                first WARMUP (peng runs WARMUP + STEPS steps).
#   (b) PyTorch: bench/pytorch_gpu_train_step.py --model M --precision P with the same
#                micro-batch and T (torch.compile, bf16 autocast or fp32 without TF32,
#                flash SDPA, fused AdamW; WARMUP untimed steps, STEPS timed), its JSON in
#                OUT_DIR/<model>-<P>/pytorch.json.
# MFU on both sides: model FLOPs per token 6N + 12 L H hd T (telemetry/flops.h) against the
# same peak: 989.4 TFLOP/s for bf16 (H200 dense bf16), 66.9 for fp32 (H200 without tensor
# cores). A run that fails (a precision this build refuses, an out-of-memory, a timeout)
# becomes a row with its error's first line; the other runs still happen.
# About 4-6 minutes on an H200 (torch.compile takes most of the PyTorch runs' time).
#
# Options: --steps N (timed steps of every model; default 30 for gpt2-124m, 20 for
# llama-1b), --warmup N (5), --models gpt2-124m,llama-1b (a subset, to rerun one).
# Environment: PYTHON (python3: the interpreter with torch), PENG_LAUNCH (a launcher
# prefix for peng, e.g. "mpirun -np 1 --bind-to none"; default none: one process),
# PENG_TIMEOUT / TORCH_TIMEOUT (seconds per run: 300 / 420), PEER_EXTRA_ARGS (appended to
# the PyTorch peer's arguments; "--device cpu --tiny ..." tests this script without a GPU).
set -uo pipefail

usage() {
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}
[[ ${1:-} == -h || ${1:-} == --help ]] && usage 0
(($# >= 2)) || usage
peng=$1 out=$2
shift 2
steps_arg="" warmup=5 models="gpt2-124m,llama-1b"
while (($#)); do
  case $1 in
    --steps) steps_arg=${2:?--steps needs a number}; shift 2 ;;
    --warmup) warmup=${2:?--warmup needs a number}; shift 2 ;;
    --models) models=${2:?--models needs a list}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ ($steps_arg == "" || $steps_arg =~ ^[1-9][0-9]*$) && $warmup =~ ^[0-9]+$ ]] ||
  { echo "error: --steps must be >= 1 and --warmup >= 0" >&2; exit 2; }
if [[ $peng == */* ]]; then
  [[ -x $peng ]] || { echo "error: PENG_BIN '$peng' is not an executable file" >&2; exit 2; }
  peng=$(cd "$(dirname "$peng")" && pwd)/$(basename "$peng")
else
  command -v "$peng" >/dev/null || { echo "error: PENG_BIN '$peng' not found on PATH" >&2; exit 2; }
fi
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
peng_timeout=${PENG_TIMEOUT:-300}
torch_timeout=${TORCH_TIMEOUT:-420}
read -r -a launch <<<"${PENG_LAUNCH:-}"
read -r -a peer_extra <<<"${PEER_EXTRA_ARGS:-}"

# model -> "micro-batch seq-len default-steps vocab precisions" and peng's model flags.
declare -A shape peng_model
shape[gpt2-124m]="16 1024 30 50257 bf16,fp32"
peng_model[gpt2-124m]="--model-family gpt2 --n-layer 12 --n-head 12 --n-embd 768 --vocab-size 50257 --max-seq-len 1024"
shape[llama-1b]="8 1024 20 128256 bf16"
# The preset brings what no flag sets: RMSNorm eps 1e-5 and Llama 3's RoPE scaling.
peng_model[llama-1b]="--model llama3.2-1b --model-family llama --n-layer 16 --n-head 32 --n-kv-head 8 --n-embd 2048 --head-dim 64 --ffn-hidden 8192 --vocab-size 128256 --rope-theta 500000 --tie-embeddings true --max-seq-len 1024"
declare -A peak=([bf16]=989.4 [fp32]=66.9)

runs=()
IFS=, read -r -a model_list <<<"$models"
for model in "${model_list[@]}"; do
  [[ -n ${shape[$model]:-} ]] || { echo "error: unknown model '$model' (gpt2-124m, llama-1b)" >&2; exit 2; }
  read -r _ _ _ _ precs <<<"${shape[$model]}"
  IFS=, read -r -a prec_list <<<"$precs"
  for prec in "${prec_list[@]}"; do runs+=("$model $prec"); done
done

mkdir -p "$out/data" || exit 1
out=$(cd "$out" && pwd)

echo "# gpu_train_step: $(date -u '+%Y-%m-%d %H:%M UTC')"
if command -v nvidia-smi >/dev/null; then
  echo "# device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
fi
echo "# peng: $peng; bench scripts from tree $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo "(no git)")$([[ -n $(git -C "$here/.." status --porcelain 2>/dev/null) ]] && echo " (uncommitted changes)")"
echo "# python: $python ($("$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1))"
echo "# runs: ${runs[*]/%/;} warm-up $warmup steps; out: $out"

start_all=$SECONDS
for run in "${runs[@]}"; do
  read -r model prec <<<"$run"
  read -r mb seq default_steps vocab _ <<<"${shape[$model]}"
  steps=${steps_arg:-$default_steps}
  dir="$out/$model-$prec"
  mkdir -p "$dir"
  rm -f "$dir"/metrics.jsonl "$dir"/peng.* "$dir"/pytorch.*
  echo "$warmup $steps" >"$dir/steps"

  # Synthetic llm.c shard: uint16 tokens (version 1) when the vocabulary fits, else uint32
  # (version 7); enough tokens for every step's batch (x and y shifted by one).
  shard="$out/data/$model.v$vocab.bin"
  n_tokens=$(((warmup + steps + 1) * mb * seq + 1))
  if [[ ! -s $shard || $(cat "$shard.n" 2>/dev/null) != "$n_tokens" ]]; then
    "$python" - "$shard" "$n_tokens" "$vocab" <<'PY' || { echo "error: cannot write $shard" >&2; exit 1; }
import array, random, struct, sys
path, n, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
wide = vocab > 65536
rng = random.Random(1234)
header = [0] * 256
header[0], header[1], header[2] = (20240801, 7, n) if wide else (20240520, 1, n)
tokens = array.array("I" if wide else "H", (rng.randrange(vocab) for _ in range(n)))
assert tokens.itemsize == (4 if wide else 2)
with open(path, "wb") as f:
    f.write(struct.pack("<256i", *header))
    f.write(tokens.tobytes())
open(path + ".n", "w").write(str(n))
PY
  fi

  # shellcheck disable=SC2206
  cmd=("${launch[@]}" "$peng" train --device cuda --precision "$prec" ${peng_model[$model]}
       --data "$shard" --seq-len "$seq" --batch-size "$mb" --micro-batch-size "$mb"
       --steps $((warmup + steps)) --lr 3e-4 --beta1 0.9 --beta2 0.95 --eps 1e-8
       --weight-decay 0.1 --grad-clip 1 --lr-schedule constant --seed 1234
       --peak "${peak[$prec]}" --metrics-jsonl "$dir/metrics.jsonl" --log-every 10)
  printf '%q ' "${cmd[@]}" >"$dir/peng.cmd"
  echo "# $model $prec: peng: $(cat "$dir/peng.cmd")"
  t0=$SECONDS
  timeout -k 15 "$peng_timeout" "${cmd[@]}" >"$dir/peng.log" 2>&1 </dev/null
  rc=$?
  echo "$rc" >"$dir/peng.rc"
  echo "#   done in $((SECONDS - t0)) s, exit $rc"

  peer=("$python" "$here/pytorch_gpu_train_step.py" --model "$model" --precision "$prec"
        --micro-batch "$mb" --seq-len "$seq" --steps "$steps" --warmup "$warmup"
        --peak-tflops "${peak[$prec]}" "${peer_extra[@]}")
  printf '%q ' "${peer[@]}" >"$dir/pytorch.cmd"
  echo "# $model $prec: PyTorch: $(cat "$dir/pytorch.cmd")"
  t0=$SECONDS
  timeout -k 15 "$torch_timeout" "${peer[@]}" >"$dir/pytorch.json" 2>"$dir/pytorch.log" </dev/null
  rc=$?
  echo "$rc" >"$dir/pytorch.rc"
  echo "#   done in $((SECONDS - t0)) s, exit $rc"
done
echo "# all runs: $((SECONDS - start_all)) s"

"$python" - "$out" "$peng_timeout" "$torch_timeout" "${runs[@]}" <<'PY'
import json, os, statistics, sys

out, peng_timeout, torch_timeout = sys.argv[1], sys.argv[2], sys.argv[3]
runs = [r.split() for r in sys.argv[4:]]


def read(path, default=""):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return default


def error_line(log, rc, timeout):
    """The first `error:` line of a failed run, else its last line."""
    if rc in (124, 137):
        return "timed out after %s s" % timeout
    lines = [l.strip() for l in log.splitlines() if l.strip()]
    for l in lines:
        if l.startswith("error:"):
            return l
    for l in lines:
        if "error:" in l:
            return l[l.index("error:"):]
    return lines[-1] if lines else "exit code %d, no output" % rc


def cell(text, limit=160):
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def gib(x):
    return "%.1f GiB" % (x / 2**30) if x else "n/a"


def failed(msg):
    return cell(msg if msg.startswith("error:") else "failed: " + msg)


def peng_result(d, warmup):
    rc = int(read(os.path.join(d, "peng.rc"), "1").strip() or 1)
    log = read(os.path.join(d, "peng.log"))
    rows = []
    for line in read(os.path.join(d, "metrics.jsonl")).splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and "tokens_per_s" in r and "step" in r:
            rows.append(r)
    if rc != 0:
        return {"error": error_line(log, rc, peng_timeout)}
    timed = [r for r in rows if r["step"] >= warmup] or rows
    if not timed:
        return {"error": "exit 0 but no step lines in metrics.jsonl"}
    res = {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
           "mfu": statistics.median(r["mfu"] for r in timed) if all("mfu" in r for r in timed) else None,
           "step_ms": 1e3 * statistics.median(r["step_time_s"] for r in timed) if all("step_time_s" in r for r in timed) else None,
           "steps": len(timed), "loss_first": rows[0].get("loss", float("nan")),
           "loss_last": rows[-1].get("loss", float("nan"))}
    mem = [r.get("device_mem_peak_bytes") for r in rows if r.get("device_mem_peak_bytes")]
    rss = [r.get("mem_high_water_bytes") for r in rows if r.get("mem_high_water_bytes")]
    res["memory"] = ("device memory peak %s" % gib(max(mem)) if mem else
                     "no device memory figure, host RSS peak %s" % gib(max(rss) if rss else None))
    for l in log.splitlines():
        if l.startswith("flops/token:"):
            try:
                res["flops_per_token"] = float(l.split()[1])
            except (IndexError, ValueError):
                pass
            break
    return res


def torch_result(d):
    rc = int(read(os.path.join(d, "pytorch.rc"), "1").strip() or 1)
    if rc != 0:
        return {"error": error_line(read(os.path.join(d, "pytorch.log")), rc, torch_timeout)}
    for line in reversed(read(os.path.join(d, "pytorch.json")).splitlines()):
        try:
            r = json.loads(line)
            if isinstance(r, dict) and "tokens_per_s" in r:
                return r
        except ValueError:
            continue
    return {"error": "exit 0 but no JSON line on stdout"}


table = []
print()
for model, prec in runs:
    d = os.path.join(out, "%s-%s" % (model, prec))
    warmup, steps = (int(x) for x in read(os.path.join(d, "steps"), "0 0").split())
    p, t = peng_result(d, warmup), torch_result(d)
    if "error" in p:
        print("- %s %s, peng: %s" % (model, prec, failed(p["error"])))
    else:
        print("- %s %s, peng: %.0f tokens/s, step %s ms (median of %d steps after %d warm-up), "
              "MFU %s, %s, loss %.4g -> %.4g, flops/token %s"
              % (model, prec, p["tokens_per_s"], "%.1f" % p["step_ms"] if p["step_ms"] else "n/a",
                 p["steps"], warmup, "%.1f%%" % (100 * p["mfu"]) if p["mfu"] is not None else "n/a",
                 p["memory"], p["loss_first"], p["loss_last"],
                 "%.4g" % p["flops_per_token"] if p.get("flops_per_token") else "n/a"))
    if "error" in t:
        print("- %s %s, PyTorch: %s" % (model, prec, failed(t["error"])))
    else:
        print("- %s %s, PyTorch %s on %s: %.0f tokens/s, step %.1f ms (median of %d, min %.1f, max %.1f), "
              "MFU %.1f%%, max allocated %s, loss %.4g -> %.4g, flops/token %.4g; compile: %s; "
              "attention: %s; gqa: %s; AdamW: %s; warm-up %.0f s"
              % (model, prec, t["torch"], t["device"], t["tokens_per_s"], t["step_ms"], t["steps"],
                 t["step_ms_min"], t["step_ms_max"], 100 * t["mfu"],
                 gib(t.get("max_memory_allocated_bytes")), t["loss_first"], t["loss_last"],
                 t["flops_per_token"], t["compile"], t["attention"], t["gqa"], t["adamw"],
                 t["warmup_s"]))
    if "error" not in p and "error" not in t and p.get("flops_per_token"):
        rel = abs(p["flops_per_token"] - t["flops_per_token"]) / t["flops_per_token"]
        if rel > 1e-3:
            print("  WARNING: model FLOPs per token differ (peng %.4g, PyTorch %.4g): not the same model?"
                  % (p["flops_per_token"], t["flops_per_token"]))
    table.append((model, prec, p, t))

print()
print("| model | precision | peng tokens/s | peng MFU | PyTorch tokens/s | PyTorch MFU | peng/PyTorch |")
print("|---|---|---:|---:|---:|---:|---:|")
for model, prec, p, t in table:
    pt = failed(p["error"]) if "error" in p else "%.0f" % p["tokens_per_s"]
    pm = "-" if "error" in p or p["mfu"] is None else "%.1f%%" % (100 * p["mfu"])
    if "error" in t:
        tt, tm = failed(t["error"]), "-"
    else:
        eager = "" if t["compile"] and not str(t["compile"]).startswith("failed") else " (eager)"
        tt, tm = "%.0f%s" % (t["tokens_per_s"], eager), "%.1f%%" % (100 * t["mfu"])
    ratio = "-" if "error" in p or "error" in t else "%.2fx" % (p["tokens_per_s"] / t["tokens_per_s"])
    print("| %s | %s | %s | %s | %s | %s | %s |" % (model, prec, pt, pm, tt, tm, ratio))
PY
