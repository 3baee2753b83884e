// TpGroup: the tensor-parallel group a model's layers split their weights over (Megatron's
// column- and row-parallel layers). Without a communicator it is the identity: size 1,
// rank 0, and the reductions do nothing, so the same layer code runs unsplit.
//
// Layers call the reductions on the same tensors in the same order on every rank of the
// group (the Communicator contract).
#pragma once

#include "peng/parallel/communicator.h"

namespace peng {

struct TpGroup {
  Communicator* comm = nullptr;  // null: no tensor parallelism
  // Activations between the tp layer pairs sharded by rows (models/nn/linear.h).
  bool sequence_parallel = false;

  int size() const { return comm ? comm->size() : 1; }
  int rank() const { return comm ? comm->rank() : 0; }
  // In place: the sum (max) over the group.
  void all_reduce_sum(Tensor& t) const {
    if (comm) comm->all_reduce(t, ReduceOp::kSum)->wait();
  }
  void all_reduce_max(Tensor& t) const {
    if (comm) comm->all_reduce(t, ReduceOp::kMax)->wait();
  }
  // Sequence parallelism: rank r holds rows [r R, (r+1) R) of an (N = size R, C) tensor.
  // local (R, C) -> full (N, C) on every rank.
  void all_gather_rows(const Tensor& local, Tensor& full) const {
    comm->all_gather(local, full)->wait();
  }
  // full (N, C), one partial sum per rank -> local (R, C): this rank's rows of the sum.
  void reduce_scatter_rows(const Tensor& full, Tensor& local) const {
    comm->reduce_scatter(full, local, ReduceOp::kSum)->wait();
  }
};

}  // namespace peng
