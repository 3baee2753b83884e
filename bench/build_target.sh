# Sourced by the bench scripts: build_target BUILD_DIR TARGET BINARY configures BUILD_DIR
# (Release) when needed and builds TARGET. When the build fails (the tree is mid-edit) an
# existing BINARY is used with a warning; without one it prints the build's last lines and
# exits 1.
build_target() {
  local build=$1 target=$2 bin=$3 log="/tmp/${2}_build.$$.log"
  if [[ ! -f "$build/CMakeCache.txt" ]]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null ||
      { echo "error: cmake configure of $build failed" >&2; exit 1; }
  fi
  if cmake --build "$build" -j"$(nproc)" --target "$target" >"$log" 2>&1; then
    rm -f "$log"
  elif [[ -x "$bin" ]]; then
    echo "warning: building $target failed (see $log); using the existing $bin" >&2
  else
    tail -20 "$log" >&2
    echo "error: cannot build $bin" >&2
    exit 1
  fi
}
