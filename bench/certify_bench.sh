#!/usr/bin/env bash
# What issuing and verifying a delivery certificate costs per ledger record: JOBS tiny
# training jobs (the gpt2-tiny reference model) write one Ed25519-signed interval record per
# step for STEPS steps into one ledger, then, best of ROUNDS:
#   report    peng report --verify --public-key: the ledger's chain and signatures (the peer:
#             what checking a signed ledger cost before certificates)
#   certify   peng certify: verify, build, sign, write JSON, CSV and HTML
#   verify    peng certify --verify with the ledger: signature, covered records, every field
#   script    scripts/verify_certificate.py with the ledger: the same, without peng (one
#             `openssl pkeyutl` process per signature)
# and `start`: peng report --verify of an empty ledger, the process start-up every peng row
# includes; "net µs per record" is (seconds - start) / records for peng's rows.
#
#   bash bench/certify_bench.sh          # JOBS=4 STEPS=250 ROUNDS=3 BUILD_DIR=build
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
jobs=${JOBS:-4}
steps=${STEPS:-250}
rounds=${ROUNDS:-3}
peng="$build/bin/peng"
source bench/build_target.sh
build_target "$build" peng "$peng"

work=$(mktemp -d /tmp/certify_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
ref=../shared/reference/gpt2-tiny
"$peng" keygen --out "$work/site" >/dev/null
for j in $(seq "$jobs"); do
  "$peng" train --init-from "$ref" --data "$ref/tokens.bin" --steps "$steps" --batch-size 4 \
    --seq-len 16 --quiet --ledger "$work/ledger.jsonl" --ledger-signing-key "$work/site.pem" \
    --ledger-every 0.000001 >/dev/null
done
records=$(wc -l <"$work/ledger.jsonl")
echo "# machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(openssl version); $(python3 --version)"
echo "# ledger: $records records of $jobs jobs"

# Best wall seconds of `rounds` runs of the command.
best() {
  local b=""
  for _ in $(seq "$rounds"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    b=$(python3 -c "print(min(float('${b:-inf}'), $t1 - $t0))")
  done
  echo "$b"
}

certify=(certify "$work/ledger.jsonl" --contract BENCH --supplier S --customer C
         --from 2000-01-01 --to 2100-01-01 --signing-key "$work/site.pem")
n=0
issue() { n=$((n + 1)); "$peng" "${certify[@]}" --out "$work/out$n"; }
"$peng" "${certify[@]}" --out "$work/cert" >/dev/null
cert="$work/cert/certificate.json"
touch "$work/empty.jsonl"
start=$(best "$peng" report "$work/empty.jsonl" --verify)
printf '%-8s %10s %14s %18s\n' what seconds "µs per record" "net µs per record"
printf '%-8s %10.3f\n' start "$start"
for what in report certify verify script; do
  case $what in
    report) s=$(best "$peng" report "$work/ledger.jsonl" --verify --public-key "$work/site.pub.pem") ;;
    certify) s=$(best issue) ;;
    verify) s=$(best "$peng" certify --verify "$cert" --public-key "$work/site.pub.pem" "$work/ledger.jsonl") ;;
    script) s=$(best python3 scripts/verify_certificate.py "$cert" --public-key "$work/site.pub.pem" "$work/ledger.jsonl") ;;
  esac
  net=$([ "$what" = script ] && echo 0 || echo "$start")
  python3 -c "print(f'{\"$what\":<8} {$s:10.3f} {$s / $records * 1e6:14.1f} {($s - $net) / $records * 1e6:18.1f}')"
done
