// main() of the *_mpi_test executables: initialises MPI, prints results on rank 0 only,
// and fails on every rank when any rank failed.
#include <gtest/gtest.h>

#include "peng/parallel/mpi/mpi_communicator.h"

int main(int argc, char** argv) {
  peng::MpiCommunicator& world = peng::mpi_world();
  ::testing::InitGoogleTest(&argc, argv);
  if (world.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS(), any = 0;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any;
}
