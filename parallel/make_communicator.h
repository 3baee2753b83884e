// Choosing the communicator for tensors is configuration (parallel.comm), not code:
//   "nccl":   NcclCommunicator, one GPU per rank (parallel/nccl);
//   "staged": StagedCommunicator over MPI, device tensors staged through host memory (ranks
//             may share a GPU);
//   "auto":   nccl when this build has NCCL and every rank of every node has a GPU of its
//             own, else staged (NCCL refuses two ranks of one group on one GPU).
// On the CPU backend tensors are host tensors: auto and staged give the staged communicator
// (host tensors pass straight through to MPI); nccl is refused.
#pragma once

#include <memory>
#include <string>

#include "peng/parallel/communicator.h"
#include "peng/parallel/mpi/mpi_communicator.h"

namespace peng {

// Collective over `world`: every rank takes the same decision (or throws the same error).
// `device` is this rank's compute device (the CUDA device NCCL binds to). `timeout_s` bounds
// each NCCL Work::wait() (the staged path's MPI groups inherit `world`'s timeout). The group
// keeps `world`'s ranks and is called `name` (distinct from `world`'s: the watchdog tells
// groups apart by name and members). Throws peng::InputError for a bad `kind`, for nccl on
// the CPU, without NCCL in the build, without a GPU, or with more ranks on a node than GPUs.
std::unique_ptr<Communicator> make_device_communicator(const std::string& kind,
                                                       MpiCommunicator& world, Device device,
                                                       double timeout_s,
                                                       const std::string& name = "tensors");

// The checks of make_device_communicator that need no other rank: InputError for a `kind`
// other than auto, nccl or staged, and for nccl on the CPU backend.
void check_comm_setting(const std::string& kind, Device device);

// True when this build contains the NCCL communicator (built with CUDA and NCCL).
bool compiled_with_nccl();

// An NcclCommunicator over `bootstrap`'s ranks (see nccl/nccl_communicator.h); in a build
// without NCCL, throws peng::Error. `bootstrap` must outlive the result.
std::unique_ptr<Communicator> make_nccl_communicator(MpiCommunicator& bootstrap, int device,
                                                     const std::string& name, double timeout_s);

}  // namespace peng
