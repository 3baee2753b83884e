// Built instead of nccl_communicator.cc when peng is configured without CUDA or NCCL: the
// NCCL entry points of make_communicator.h link and fail with a clear error when called.
#include "peng/core/error.h"
#include "peng/parallel/make_communicator.h"

namespace peng {

bool compiled_with_nccl() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(MpiCommunicator&, int, const std::string&,
                                                     double) {
  throw Error(
      "this peng build has no NCCL communicator (configure with -DPENG_CUDA=ON on a machine with "
      "the CUDA toolkit and NCCL)");
}

}  // namespace peng
