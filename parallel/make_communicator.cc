// make_device_communicator: parallel.comm -> an NCCL or a host-staged MPI communicator.
// The decision is pooled over the world (one small MPI all_reduce), so every rank picks the
// same engine or throws the same error; none is left waiting in the other engine's set-up.
#include "peng/parallel/make_communicator.h"

#include "peng/core/cuda/memory.h"
#include "peng/core/error.h"
#include "peng/parallel/staged_communicator.h"

namespace peng {

namespace {

// Ranks of `world` on this node (MPI_COMM_TYPE_SHARED).
int ranks_on_node(MpiCommunicator& world) {
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(world.comm(), MPI_COMM_TYPE_SHARED, world.rank(), MPI_INFO_NULL, &node) !=
      MPI_SUCCESS) {
    throw Error("MPI_Comm_split_type on group " + world.name() + " failed");
  }
  int n = 1;
  MPI_Comm_size(node, &n);
  MPI_Comm_free(&node);
  return n;
}

std::unique_ptr<Communicator> staged(MpiCommunicator& world, const std::string& name) {
  // A group of its own (same ranks): its traffic never matches the world's.
  return std::make_unique<StagedCommunicator>(world.split(0, world.rank(), name));
}

}  // namespace

void check_comm_setting(const std::string& kind, Device device) {
  PENG_INPUT_CHECK(kind == "auto" || kind == "nccl" || kind == "staged",
                   "parallel.comm (--comm) must be auto, nccl or staged, got \"", kind, "\"");
  PENG_INPUT_CHECK(kind != "nccl" || device.is_cuda(),
                   "parallel.comm = nccl: this rank trains on the CPU backend, whose host "
                   "tensors go over MPI (use --comm auto or staged, or --device cuda)");
}

std::unique_ptr<Communicator> make_device_communicator(const std::string& kind,
                                                       MpiCommunicator& world, Device device,
                                                       double timeout_s, const std::string& name) {
  check_comm_setting(kind, device);
  if (kind == "staged" || device.is_cpu()) return staged(world, name);
  if (!compiled_with_nccl()) {
    PENG_INPUT_CHECK(kind != "nccl",
                     "parallel.comm = nccl but this build has no NCCL (build with the CUDA "
                     "toolkit and NCCL, -DPENG_CUDA=ON; or use --comm staged)");
    return staged(world, name);
  }
  // Pooled over the world with max: [a rank sees no GPU, a rank's device is out of range,
  // a node runs more ranks than it has GPUs].
  const int gpus = cuda::device_count();
  const int local_ranks = ranks_on_node(world);
  const int index = device.index;
  Tensor f = Tensor::from_vector<int32_t>(
      {gpus == 0 ? 1 : 0, gpus > 0 && (index < 0 || index >= gpus) ? 1 : 0,
       gpus > 0 && local_ranks > gpus ? 1 : 0},
      {3});
  world.all_reduce(f, ReduceOp::kMax)->wait();
  const int32_t* v = f.data<int32_t>();
  const bool no_gpu = v[0] != 0, bad_device = v[1] != 0, crowded = v[2] != 0;
  if (no_gpu) {
    PENG_INPUT_CHECK(kind != "nccl", "parallel.comm = nccl but a rank of group ", name,
                     " sees no CUDA device (this rank sees ", gpus, "); use --comm staged or auto");
    return staged(world, name);
  }
  PENG_CHECK(!bad_device, "make_device_communicator for group ", name,
             ": a rank's device is "
             "not one of its node's CUDA devices (this rank: device ",
             index, " of ", gpus, ")");
  if (crowded) {
    // NCCL refuses two ranks of one group on one GPU.
    PENG_INPUT_CHECK(kind != "nccl",
                     "parallel.comm = nccl needs one GPU per rank, but a node runs more ranks of "
                     "group ",
                     name, " than it has GPUs (this node: ", local_ranks, " ranks, ", gpus,
                     " GPU(s)); use --comm staged or auto, or fewer ranks per node");
    return staged(world, name);
  }
  return make_nccl_communicator(world, index, name, timeout_s);
}

}  // namespace peng
