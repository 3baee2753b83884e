#!/usr/bin/env bash
# Collective bus bandwidth of peng's MpiCommunicator against raw MPI on the same buffers
# (bench/collective_bench.cc), at -np 2 and -np 4 (oversubscribed where the machine has
# fewer cores), with the machine it ran on. Prints the tables for docs/PERFORMANCE.md.
#
#   bash bench/collective_bench.sh [collective_bench flags, e.g. --seconds 0.5 --json]
#   BUILD_DIR=build-bench NPS="2 4" bash bench/collective_bench.sh
#
# BUILD_DIR (default build) is configured and built if needed; if the build fails (say the
# tree is mid-edit) an existing binary is used with a warning. Runs as root are allowed
# (OMPI_ALLOW_RUN_AS_ROOT), as in the project's containers.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
nps=${NPS:-"2 4"}
bin="$build/bin/collective_bench"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

source bench/build_target.sh
build_target "$build" collective_bench "$bin"

echo "# machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
echo "# $(mpirun --version 2>/dev/null | head -1); $(uname -sr)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average:$(uptime | sed 's/.*load average://')"
echo "# tree: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- parallel/mpi parallel/communicator.h 2>/dev/null || echo ' (parallel/mpi modified)')"
rc=0
for np in $nps; do
  echo
  echo "## mpirun -np $np --oversubscribe $bin $*"
  mpirun -np "$np" --oversubscribe "$bin" "$@" || rc=$?
done
exit $rc
