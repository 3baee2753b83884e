#!/usr/bin/env bash
# Installs the dependencies (Debian packages) and builds peng into build/ (Release).
# Extra arguments go to CMake's configure step, e.g. -DPENG_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)"
