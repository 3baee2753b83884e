#!/usr/bin/env bash
# The whole GPU check of the CUDA backend in one run (issue 14): the GPU tests (ctest -L gpu)
# and the GPU training-step benchmark, with a short table printed last.
#
# The GPU machine has CUDA, cuDNN, NCCL, CMake and PyTorch but may lack Open MPI, Protobuf,
# OpenBLAS, GoogleTest, CLI11 and the network, so the check travels as a bundle built here
# (with Open MPI's launcher, for the multi-rank tests: tests/gpu/*_mpi_test.cc and
# multi_gpu_train_test.cc run their ranks under it):
#
#   bash scripts/gpu_check.sh pack   # here: build build-gpu/ (sm_90, no -march=native) and
#                                    # the bundle build-gpu/bundle: binaries, the non-CUDA
#                                    # shared libraries they load, reference cases, a ctest
#                                    # file with relative paths; packed as
#                                    # build-gpu/bundle.tar.xz (checked to fit 64 MiB)
#   bash scripts/gpu_check.sh run    # there, from the repository root with the bundle (or
#                                    # its archive) copied in: ctest -L gpu, the benchmark,
#                                    # the table
#   bash scripts/gpu_check.sh        # both, on one machine that has everything and a GPU
#
# With the device tool: pack here, then
#   run(command="bash scripts/gpu_check.sh run", carry=["build-gpu/bundle.tar.xz"], timeout_s=600)
# Outputs (test XML, logs, benchmark JSON) go to $OUT when set, else build-gpu/out.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bundle=build-gpu/bundle

pack() {
  command -v cmake >/dev/null || bash scripts/install_deps.sh
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DPENG_NATIVE=OFF -DPENG_CUDA=ON >/dev/null
  local tests=() t
  for t in tests/gpu/*_test.cc; do tests+=("$(basename "$t" .cc)"); done
  cmake --build build-gpu -j"$(nproc)" --target peng "${tests[@]}"
  rm -rf "$bundle"
  mkdir -p "$bundle"/{bin,tests,lib,shared,examples,bench}
  cp build-gpu/bin/peng "$bundle/bin/"
  for t in "${tests[@]}"; do cp "build-gpu/tests/$t" "$bundle/tests/"; done
  cp -r ../shared/reference "$bundle/shared/"
  rm -f "$bundle"/shared/reference/*.py
  cp examples/*.pbtxt "$bundle/examples/"
  cp bench/gpu_train_step.sh bench/pytorch_gpu_train_step.py bench/synthetic_shard.py \
    bench/dp_step_cost.sh "$bundle/bench/" 2>/dev/null || true
  bundle_mpi
  # Shared libraries the binaries (and the launcher's plugins) load, except the C/C++ runtime
  # and CUDA's own (the GPU machine's driver and toolkit provide those).
  local skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcudnn|libnccl|libnvidia|libnvrtc)'
  for bin in "$bundle"/bin/* "$bundle"/tests/* "$bundle"/ompi/bin/* $(find "$bundle"/ompi "$bundle"/pmix -name '*.so'); do
    ldd "$bin" | awk '/=> \// {print $3}'
  done | sort -u | while read -r lib; do
    basename "$lib" | grep -Eq "$skip" || cp -L "$lib" "$bundle/lib/"
  done
  {
    echo "# ctest file of the GPU check bundle (scripts/gpu_check.sh): paths relative to it."
    for t in "${tests[@]}"; do
      case $t in
        *_mpi_test)  # under the bundled launcher, on 3 and 4 ranks as in tests/CMakeLists.txt
          for np in 3 4; do
            echo "add_test(${t}_np$np \"\$ENV{PENG_TEST_MPIEXEC}\" -n $np --oversubscribe --bind-to none \"\${CMAKE_CURRENT_LIST_DIR}/tests/$t\" --gtest_output=xml:\$ENV{PENG_GPU_OUT}/${t}_np$np.xml)"
            echo "set_tests_properties(${t}_np$np PROPERTIES LABELS gpu TIMEOUT 300)"
          done
          ;;
        *)
          echo "add_test($t \"\${CMAKE_CURRENT_LIST_DIR}/tests/$t\" --gtest_output=xml:\$ENV{PENG_GPU_OUT}/$t.xml)"
          echo "set_tests_properties($t PROPERTIES LABELS gpu TIMEOUT 600)"
          ;;
      esac
    done
  } >"$bundle/CTestTestfile.cmake"
  tar -C build-gpu -cf - bundle | xz -T0 -6 >"$bundle.tar.xz"
  local size
  size=$(du -sm "$bundle.tar.xz" | cut -f1)
  echo "bundle: $bundle.tar.xz, ${size} MiB ($(du -sm "$bundle" | cut -f1) MiB unpacked)," \
    "${#tests[@]} GPU test executables"
  if ((size > 64)); then
    echo "error: the bundle is ${size} MiB, over the device tool's 64 MiB carry limit" >&2
    exit 1
  fi
}

# Open MPI's launcher, relocatable: mpirun (orterun), its plugins and help files under
# ompi/ as they sit under Open MPI's prefix, and PMIx's plugins and help files under pmix/
# (OPAL_PREFIX and PMIX_PREFIX point there when run).
bundle_mpi() {
  local prefix pkglib pkgdata pmix
  prefix=$(ompi_info --parsable --path prefix | cut -d: -f3)
  pkglib=$(ompi_info --parsable --path pkglibdir | head -1 | cut -d: -f3)
  pkgdata=$(ompi_info --parsable --path pkgdatadir | cut -d: -f3)
  mkdir -p "$bundle/ompi/bin" "$bundle/ompi/${pkglib#$prefix/}" "$bundle/ompi/${pkgdata#$prefix/}"
  cp -L "$(readlink -f "$(command -v mpirun)")" "$bundle/ompi/bin/mpirun"
  cp -r "$pkglib/." "$bundle/ompi/${pkglib#$prefix/}/"
  cp -r "$pkgdata/." "$bundle/ompi/${pkgdata#$prefix/}/"
  # External PMIx (Debian): its prefix holds lib/pmix (plugins) and share/pmix (help files).
  pmix=$(ldd "$pkglib"/mca_pmix_*.so 2>/dev/null | awk '/libpmix/ {print $3; exit}')
  mkdir -p "$bundle/pmix"
  if [[ -n $pmix ]]; then
    pmix=$(dirname "$(dirname "$(readlink -f "$pmix")")")
    mkdir -p "$bundle/pmix/lib" "$bundle/pmix/share"
    [[ -d $pmix/lib/pmix ]] && cp -r "$pmix/lib/pmix" "$bundle/pmix/lib/"
    [[ -d $pmix/share/pmix ]] && cp -r "$pmix/share/pmix" "$bundle/pmix/share/"
  fi
}

# The bundled launcher's environment (what bundle_mpi laid out); tests start ranks with it.
use_bundled_mpi() {
  export OPAL_PREFIX=$root/$bundle/ompi PMIX_PREFIX=$root/$bundle/pmix
  export PENG_TEST_MPIEXEC=$root/$bundle/ompi/bin/mpirun
  # Shared memory and TCP only: no InfiniBand or UCX plugins needed on one machine.
  export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_osc=pt2pt
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
}

run() {
  if [[ ! -x $bundle/bin/peng && -f $bundle.tar.xz ]]; then
    # Python's tarfile reads xz where the xz tool may be missing.
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
      "$bundle.tar.xz" build-gpu
  fi
  [[ -x $bundle/bin/peng ]] || {
    echo "error: no bundle at $bundle (run 'bash scripts/gpu_check.sh pack' first)" >&2
    exit 1
  }
  local out=${OUT:-$root/build-gpu/out}
  mkdir -p "$out"
  # cuDNN may come with PyTorch's wheels rather than the toolkit.
  local cudnn_dir
  cudnn_dir=$(python3 -c 'import nvidia.cudnn, os; print(os.path.join(nvidia.cudnn.__path__[0], "lib"))' 2>/dev/null || true)
  export LD_LIBRARY_PATH="$root/$bundle/lib:/usr/local/cuda/lib64${cudnn_dir:+:$cudnn_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PENG_TEST_SOURCE_DIR=$root PENG_TEST_SHARED_DIR=$root/$bundle/shared
  export PENG_TEST_BIN_DIR=$root/$bundle/bin PENG_GPU_OUT=$out
  use_bundled_mpi
  "$PENG_TEST_MPIEXEC" -n 2 --oversubscribe true ||
    echo "(the bundled mpirun failed: the multi-rank GPU tests will fail)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv 2>&1 |
    tee "$out/gpu.txt" || echo "(nvidia-smi failed: the GPU tests will skip)"
  local missing
  missing=$(ldd "$bundle/bin/peng" | grep 'not found' || true)
  [[ -z $missing ]] || { echo "error: peng cannot load: $missing" >&2; exit 1; }
  set +e
  (cd "$bundle" && ctest -L gpu --output-on-failure --timeout 300) 2>&1 | tee "$out/ctest.log"
  local ctest_rc=${PIPESTATUS[0]}
  local bench_table="(benchmark not run: bench/gpu_train_step.sh missing)"
  if [[ -f $bundle/bench/gpu_train_step.sh ]]; then
    bash "$bundle/bench/gpu_train_step.sh" "$root/$bundle/bin/peng" "$out/bench" 2>&1 |
      tee "$out/bench.log"
    bench_table=$(awk '/^\|/' "$out/bench.log" | tail -n 20)
  fi
  # Data parallelism on one GPU: dp 2 over the staged path against dp 1, same global batch.
  local dp_table="(dp benchmark not run: bench/dp_step_cost.sh missing)"
  if [[ -f $bundle/bench/dp_step_cost.sh ]]; then
    DEVICE=cuda PENG=$root/$bundle/bin/peng PYTHON=python3 STEPS=20 ROUNDS=2 \
      bash "$bundle/bench/dp_step_cost.sh" 2>&1 | tee "$out/dp_bench.log"
    dp_table=$(grep -E '^(\||# (device|date|tree))' "$out/dp_bench.log")
  fi
  set -e
  echo
  echo "## GPU check, $(date -u +%Y-%m-%d), $(head -2 "$out/gpu.txt" | tail -1)"
  echo
  # Per executable, from its gtest XML: a skipped test (no device) must not read as passed.
  python3 - "$out" <<'PY'
import glob, os, sys
import xml.etree.ElementTree as ET
print("| GPU test executable | tests | passed | failed | skipped |")
print("|---|---:|---:|---:|---:|")
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.xml"))):
    cases = list(ET.parse(path).getroot().iter("testcase"))
    failed = sum(1 for c in cases if c.find("failure") is not None)
    skipped = sum(1 for c in cases if c.find("skipped") is not None or c.get("result") == "skipped")
    name = os.path.basename(path)[:-4]
    print("| %s | %d | %d | %d | %d |" % (name, len(cases), len(cases) - failed - skipped, failed, skipped))
PY
  echo
  echo "$bench_table"
  echo
  echo "$dp_table"
  return "$ctest_rc"
}

case ${1:-all} in
  pack) pack ;;
  run) run ;;
  all) pack && run ;;
  *) echo "usage: bash scripts/gpu_check.sh [pack|run]" >&2; exit 2 ;;
esac
