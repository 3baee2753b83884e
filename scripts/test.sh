#!/usr/bin/env bash
# The whole test suite from a fresh Debian machine: dependencies, build, ctest.
# GPU tests (label `gpu`) skip cleanly when no device is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# Multi-rank tests run real processes under mpirun; Open MPI refuses root without these.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
cd build
ctest --output-on-failure -j"$(nproc)" "$@"
