// Choosing the communicator for device tensors is configuration (parallel.comm), not code:
//   "nccl": NcclCommunicator, one GPU per rank (parallel/nccl);
//   "mpi":  StagedCommunicator over MPI, device tensors staged through host memory;
//   "auto": nccl when this build has NCCL and every rank of every node has a GPU of its own,
//           else mpi (NCCL refuses two ranks of one group on one GPU).
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "parallel/mpi/mpi_communicator.h"

namespace peng {

// Collective over `world`: every rank takes the same decision (or throws the same error).
// `device` is this rank's CUDA device (for nccl). `timeout_s` bounds each NCCL Work::wait()
// (MPI collectives have no timeout). The group keeps `world`'s ranks and is called `name`.
// Throws peng::InputError for a bad `kind`, for nccl without NCCL in the build, without a
// GPU, or with more ranks on a node than GPUs.
std::unique_ptr<Communicator> make_device_communicator(const std::string& kind,
                                                       MpiCommunicator& world, int device,
                                                       double timeout_s,
                                                       const std::string& name = "world");

// True when this build contains the NCCL communicator (built with CUDA and NCCL).
bool compiled_with_nccl();

// An NcclCommunicator over `bootstrap`'s ranks (see nccl/nccl_communicator.h); in a build
// without NCCL, throws peng::Error. `bootstrap` must outlive the result.
std::unique_ptr<Communicator> make_nccl_communicator(MpiCommunicator& bootstrap, int device,
                                                     const std::string& name, double timeout_s);

}  // namespace peng
