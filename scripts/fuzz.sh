#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, a separate clang project) into build/fuzz and
# runs each for SECONDS (default 30), in parallel, on a corpus under build/fuzz/corpus
# seeded by peng's own writers. Exits non-zero on any finding (crash, sanitizer report,
# an exception other than peng::Error, a broken invariant, timeout, out of memory); the
# input that caused it is saved as build/fuzz/artifacts/TARGET-{crash,leak,timeout,oom}-*.
#   bash scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
out=build/fuzz
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 1; }

start=$SECONDS
cmake -S tests/fuzz -B "$out" -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$out" -j"$(nproc)" >/dev/null
echo "fuzz: built in $((SECONDS - start)) s"

mkdir -p "$out/corpus/manifest" "$out/corpus/safetensors" "$out/artifacts" "$out/logs"
"$out/fuzz_seeds" "$out/corpus/manifest" "$out/corpus/safetensors"

pids=()
targets=(manifest safetensors)
for t in "${targets[@]}"; do
  # -rss_limit_mb: both run at once on CI's 2 cores and small memory; -timeout: one input.
  "$out/${t}_fuzz" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" "$out/corpus/$t" \
    >"$out/logs/$t.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  if wait "${pids[$i]}"; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/logs/$t.log" | grep -o '[0-9]*$' || true)
    echo "fuzz: ${t}_fuzz: no findings in ${secs} s (${runs:-?} inputs, corpus $(ls "$out/corpus/$t" | wc -l))"
  else
    status=1
    echo "fuzz: ${t}_fuzz FOUND A PROBLEM (log: $out/logs/$t.log); last lines:" >&2
    tail -n 40 "$out/logs/$t.log" >&2
  fi
done
echo "fuzz: total $((SECONDS - start)) s"
exit $status
