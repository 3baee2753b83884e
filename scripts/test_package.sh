#!/usr/bin/env bash
# peng as a user's project sees it: used through add_subdirectory (tests/package/subproject:
# configured only), then installed into a temporary prefix: every public header compiled on
# its own (tests/package), and each example under examples/ configured, built and tested with
# nothing but -DCMAKE_PREFIX_PATH=<prefix> (docs/EXTENDING.md).
#   bash scripts/test_package.sh        (after scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
# Through add_subdirectory: only the libraries, portable (configured, not built).
sub=build/package/subproject
cmake -S tests/package/subproject -B "$sub" -DPENG_SOURCE="$PWD" >/dev/null
if grep -q -- '-march=native' "$sub/compile_commands.json"; then
  echo "error: peng built as a subproject compiles with -march=native" >&2
  exit 1
fi
echo "package: add_subdirectory(peng) adds no -march=native, tests or benchmarks"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
echo "package: installed into $prefix ($(find "$prefix/include/peng" -name '*.h' | wc -l) headers)"
for project in tests/package examples/custom_loop examples/custom_layer examples/custom_schedule; do
  out=build/package/$(basename "$project")
  cmake -S "$project" -B "$out" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$out" -j"$(nproc)" >/dev/null
  (cd "$out" && ctest --output-on-failure)
  echo "package: $project built and tested against the installed peng"
done
