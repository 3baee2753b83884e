#!/usr/bin/env bash
# Checkpoint I/O against the disk, one run, one table (docs/PERFORMANCE.md, "Checkpoint
# save and load"):
#   - the disk's sequential bandwidth with dd, as many streams as ranks, about the
#     checkpoint's size: write (16 MiB blocks, conv=fsync) buffered and with oflag=direct,
#     read after dropping the page cache (when allowed; else the read figure is from the
#     page cache, and says so);
#   - peng's save: `peng train` of GPT-2 124M (values + 2 AdamW moments, ~1.5 GB) for one
#     step on a synthetic shard, saving at the end, with the rank files written around the
#     page cache (--checkpoint-direct-io auto, the default) and buffered (off); the save time
#     is the metrics JSONL's checkpoint_stall_s (write + fsync + commit), the size is `du`
#     of step-1/;
#   - peng's load: `peng ckpt inspect STEP --verify` (reads every tensor, checks every
#     chunk checksum; one process), and the time a resume adds to a run (a 1-step run
#     resumed from step 1, minus a fresh 1-step run; every rank reads its part);
#   - the stall of an --async-checkpoint save (the time the training loop was blocked: the
#     snapshot into host memory), for a run's first save and a later one, beside the
#     synchronous one.
# Every measurement starts settled: page cache dropped, then SETTLE seconds idle. On VMs
# that hand freed guest memory back to the host (free page reporting), memory touched for
# the first time costs a host fault per page, so whether a write lands in just-freed or
# long-free memory changes dd's figure several-fold; settling puts dd and peng in the same
# (long-free) state. dd's write into just-freed memory is printed too ("warm").
#
#   bash bench/checkpoint_io.sh [RANKS]    (default 1; RANKS > 1 runs mpirun -n RANKS, --dp RANKS)
# Environment: PENG (default build/bin/peng), WORK (scratch folder on the disk measured,
# default build/bench-ckpt, removed at the end), MODEL (default gpt2-124m), SETTLE (12).
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${1:-1}
PENG=$(realpath "${PENG:-build/bin/peng}")
model=${MODEL:-gpt2-124m}
settle_s=${SETTLE:-12}
work=${WORK:-build/bench-ckpt}
rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
cache=cold
settle() {
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || cache=warm
  sleep "$settle_s"
}

launch=()
if ((ranks > 1)); then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  # One OpenMP thread per rank: the ranks share the machine's cores.
  launch=(mpirun -n "$ranks" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1)
fi
python3 bench/synthetic_shard.py "$work/train.bin" 100000 50257
train() {
  "${launch[@]}" "$PENG" train --model "$model" --data "$work/train.bin" --batch-size "$ranks" \
    --seq-len 64 --dp "$ranks" --lr-schedule constant --quiet "$@" >>"$work/train.log" 2>&1 ||
    { cat "$work/train.log" >&2; exit 1; }
}
stall_of() {  # stall_of JSONL [K]: the K-th save's checkpoint_stall_s (default: the sum)
  python3 -c "
import json, sys
s = [json.loads(l)['checkpoint_stall_s'] for l in open(sys.argv[1]) if 'checkpoint_stall_s' in l]
print(s[int(sys.argv[2])] if len(sys.argv) > 2 else sum(s))" "$@"
}

# ---- peng save, synchronous and asynchronous ----
settle
train --steps 1 --checkpoint-dir "$work/sync" --metrics-jsonl "$work/sync.jsonl"
step=$work/sync/step-00000001
sync_stall=$(stall_of "$work/sync.jsonl")
bytes=$(du -sb "$step" | cut -f1)
settle
train --steps 1 --checkpoint-dir "$work/buffered" --metrics-jsonl "$work/buffered.jsonl" \
  --checkpoint-direct-io off
buffered_stall=$(stall_of "$work/buffered.jsonl")
rm -rf "$work/buffered"
settle
# Two async saves, 5 steps apart: the first also maps the snapshot buffer (first touch of
# every page), the second reuses it, as every later save of a run does.
train --steps 10 --checkpoint-every 5 --checkpoint-dir "$work/async" --async-checkpoint \
  --metrics-jsonl "$work/async.jsonl"
async_first=$(stall_of "$work/async.jsonl" 0)
async_stall=$(stall_of "$work/async.jsonl" 1)
rm -rf "$work/async"

# ---- dd, one stream per rank, the checkpoint's size in all ----
count=$(calc "max(1, round($bytes / $ranks / 2**24))")
dd_bytes=$(calc "$count * $ranks * 2**24")
dd_streams() {  # dd_streams write|direct|read: wall-clock MB/s of all streams together
  local t0
  t0=$(now)
  for ((r = 0; r < ranks; ++r)); do
    if [ "$1" = write ]; then
      dd if=/dev/zero of="$work/dd.$r" bs=16M count="$count" conv=fsync status=none &
    elif [ "$1" = direct ]; then
      dd if=/dev/zero of="$work/dd.$r" bs=16M count="$count" oflag=direct conv=fsync status=none &
    else
      dd if="$work/dd.$r" of=/dev/null bs=16M status=none &
    fi
  done
  wait
  calc "$dd_bytes / ($(now) - $t0) / 1e6"
}
settle
dd_direct=$(dd_streams direct)
rm -f "$work"/dd.*
settle
dd_write=$(dd_streams write)
settle
dd_read=$(dd_streams read)
rm -f "$work"/dd.*
dd_write_warm=$(dd_streams write)  # into the page cache just freed
rm -f "$work"/dd.*

# ---- peng load ----
settle
t0=$(now)
"$PENG" ckpt inspect "$step" --verify >"$work/verify.log" 2>&1 || { cat "$work/verify.log" >&2; exit 1; }
verify_s=$(calc "$(now) - $t0")
settle
t0=$(now)
train --steps 2 --resume "$step"
resume_s=$(calc "$(now) - $t0")
settle
t0=$(now)
train --steps 1
fresh_s=$(calc "$(now) - $t0")
load_s=$(calc "$resume_s - $fresh_s")

python3 - "$ranks" "$bytes" "$dd_write" "$sync_stall" "$dd_read" "$verify_s" "$load_s" \
  "$resume_s" "$fresh_s" "$async_stall" "$dd_write_warm" "$async_first" "$dd_direct" \
  "$buffered_stall" "$cache" "$model" <<'PY'
import sys
(ranks, size, ddw, sync_s, ddr, verify_s, load_s, resume_s, fresh_s, async_s, ddw_warm,
 async_first, ddd, buffered_s) = map(float, sys.argv[1:15])
cache, model = sys.argv[15], sys.argv[16]
mb = size / 1e6
save = mb / sync_s
verify = mb / verify_s
resume = mb / load_s if load_s > 0 else float("nan")
print(f"peng checkpoint I/O: {model}, {int(ranks)} rank(s), checkpoint {mb:.0f} MB "
      f"(du -sb of step-00000001/)")
if cache != "cold":
    print("note: could not drop the page cache: the read and load figures are from the page cache")
print(f"async stall: first save {async_first:.2f} s (maps the snapshot buffer), later saves "
      f"{async_s:.2f} s")
print(f"load: verify {verify_s:.2f} s; resume {resume_s:.2f} s resumed run - {fresh_s:.2f} s "
      f"fresh run = {load_s:.2f} s")
print(f"dd write into just-freed (warm) memory: {ddw_warm:.0f} MB/s")
print()
buffered = mb / buffered_s
print("| ranks | checkpoint MB | dd write MB/s: buffered / direct | peng save MB/s, direct (% of "
      "dd direct) | peng save MB/s, buffered (% of dd buffered) | dd read MB/s "
      "| peng load MB/s, verify (% of dd) | peng load MB/s, resume (% of dd) | sync stall s "
      "| async stall s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {int(ranks)} | {mb:.0f} | {ddw:.0f} / {ddd:.0f} | {save:.0f} ({100 * save / ddd:.0f}%) "
      f"| {buffered:.0f} ({100 * buffered / ddw:.0f}%) | {ddr:.0f} "
      f"| {verify:.0f} ({100 * verify / ddr:.0f}%) | {resume:.0f} ({100 * resume / ddr:.0f}%) "
      f"| {sync_s:.2f} | {async_s:.2f} |")
PY
