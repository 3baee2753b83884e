// ProcessMesh: the world as pp x dp x tp with tp fastest-varying, so the tp ranks of a
// group are neighbours (one node):  rank = (pp_rank * dp + dp_rank) * tp + tp_rank.
// The dp, tp and pp groups are split from the world once, at construction (collective).
// Expert parallelism takes ep ranks out of dp (Megatron-Core's expert-data-parallel layout):
// the ep group is ep consecutive dp ranks (dp_rank / ep the same), the expert-data-parallel
// group the dp / ep ranks holding the same experts (dp_rank % ep the same).
//
// A GPU job builds two meshes of the same shape (DESIGN.md): one over MPI for control and
// host scalars (agreements, loss and norm sums), one over the tensor communicator (NCCL, or
// the staged path) for tensors. Their groups differ in name by a suffix ("dp" and
// "dp-control"), so errors and the watchdog tell them apart.
#pragma once

#include <memory>
#include <string>

#include "peng/parallel/communicator.h"

namespace peng {

struct MeshShape {
  int dp = 1, tp = 1, pp = 1;
  int ep = 1;  // divides dp
};

// Checks world = dp * tp * pp, inferring dp when it is 0. Throws InputError naming the
// numbers otherwise.
MeshShape resolve_mesh(int world_size, int dp, int tp, int pp);

class ProcessMesh {
 public:
  // Groups are called "dp", "tp", "pp", "ep", "expert_dp", each followed by `suffix`.
  ProcessMesh(Communicator& world, const MeshShape& shape, const std::string& suffix = "");

  const MeshShape& shape() const { return shape_; }
  int dp_rank() const { return dp_rank_; }
  int tp_rank() const { return tp_rank_; }
  int pp_rank() const { return pp_rank_; }
  Communicator& world() { return world_; }
  Communicator& dp() { return *dp_; }
  Communicator& tp() { return *tp_; }
  Communicator& pp() { return *pp_; }
  // Null when ep = 1.
  Communicator* ep() { return ep_.get(); }
  Communicator* expert_dp() { return edp_.get(); }

 private:
  Communicator& world_;
  MeshShape shape_;
  int dp_rank_, tp_rank_, pp_rank_;
  std::unique_ptr<Communicator> dp_, tp_, pp_, ep_, edp_;
};

}  // namespace peng
