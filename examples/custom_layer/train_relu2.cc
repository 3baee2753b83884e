// train_relu2: `peng train` for the llama_relu2 family (relu2_llama.h), registered from this
// program's own code. Takes peng train's arguments, e.g.
//   mpirun -np 2 train_relu2 --init-from reference --data reference/tokens.bin --tp 2 ...
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <peng/launch/config.h>
#include <peng/launch/trainer.h>
#include <peng/parallel/mpi/mpi_communicator.h>

#include "relu2_llama.h"

int main(int argc, char** argv) {
  try {
    relu2::register_all();
    peng::train(peng::parse_train_args(std::vector<std::string>(argv + 1, argv + argc)));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    peng::abort_job(1);  // the other ranks may wait in a collective
    return 1;
  }
}
