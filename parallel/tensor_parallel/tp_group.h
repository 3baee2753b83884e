// TpGroup: the tensor-parallel group a model's layers split their weights over (Megatron's
// column- and row-parallel layers). Without a communicator it is the identity: size 1,
// rank 0, and the reductions do nothing, so the same layer code runs unsplit.
//
// Layers call the reductions on the same tensors in the same order on every rank of the
// group (the Communicator contract).
#pragma once

#include "parallel/communicator.h"

namespace peng {

struct TpGroup {
  Communicator* comm = nullptr;  // null: no tensor parallelism

  int size() const { return comm ? comm->size() : 1; }
  int rank() const { return comm ? comm->rank() : 0; }
  // In place: the sum (max) over the group.
  void all_reduce_sum(Tensor& t) const {
    if (comm) comm->all_reduce(t, ReduceOp::kSum)->wait();
  }
  void all_reduce_max(Tensor& t) const {
    if (comm) comm->all_reduce(t, ReduceOp::kMax)->wait();
  }
};

}  // namespace peng
