#include "peng/parallel/process_mesh.h"

#include "peng/core/error.h"

namespace peng {

MeshShape resolve_mesh(int world, int dp, int tp, int pp) {
  PENG_INPUT_CHECK(tp >= 1 && pp >= 1 && dp >= 0, "parallel.tp (", tp, ") and parallel.pp (", pp,
                   ") must be >= 1 and parallel.dp (", dp, ") >= 0");
  if (dp == 0) {
    PENG_INPUT_CHECK(world % (tp * pp) == 0, "world size ", world,
                     " is not divisible by tp x pp = ", tp, " x ", pp);
    dp = world / (tp * pp);
  }
  PENG_INPUT_CHECK(dp * tp * pp == world, "world size ", world, " != dp x tp x pp = ", dp, " x ",
                   tp, " x ", pp);
  return {dp, tp, pp};
}

ProcessMesh::ProcessMesh(Communicator& world, const MeshShape& shape, const std::string& suffix)
    : world_(world), shape_(shape) {
  PENG_CHECK(shape.dp * shape.tp * shape.pp == world.size(), "mesh ", shape.dp, "x", shape.tp, "x",
             shape.pp, " does not cover world size ", world.size());
  const int r = world.rank();
  tp_rank_ = r % shape.tp;
  dp_rank_ = (r / shape.tp) % shape.dp;
  pp_rank_ = r / (shape.tp * shape.dp);
  dp_ = world.split(pp_rank_ * shape.tp + tp_rank_, dp_rank_, "dp" + suffix);
  tp_ = world.split(pp_rank_ * shape.dp + dp_rank_, tp_rank_, "tp" + suffix);
  pp_ = world.split(dp_rank_ * shape.tp + tp_rank_, pp_rank_, "pp" + suffix);
  PENG_CHECK(shape.ep >= 1 && shape.dp % shape.ep == 0, "mesh: ep ", shape.ep,
             " does not divide dp ", shape.dp);
  if (shape.ep > 1) {
    ep_ = dp_->split(dp_rank_ / shape.ep, dp_rank_, "ep" + suffix);
    edp_ = dp_->split(dp_rank_ % shape.ep, dp_rank_, "expert_dp" + suffix);
  }
}

}  // namespace peng
