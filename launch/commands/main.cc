// The peng command: parses the subcommand and turns every peng::Error into one
// `error: ...` line on stderr and a non-zero exit.
#include <cstdio>
#include <exception>

#include "peng/launch/commands/cli.h"
#include "peng/parallel/mpi/mpi_communicator.h"

int main(int argc, char** argv) {
  try {
    return peng::run_cli(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    // In a multi-rank job the other ranks may be waiting in a collective: end them all.
    peng::abort_job(1);
    return 1;
  }
}
