// ProcessMesh on 3 or 4 ranks: rank placement (tp fastest) and the groups it builds.
#include "peng/parallel/process_mesh.h"

#include <gtest/gtest.h>

#include "peng/parallel/mpi/mpi_communicator.h"

namespace peng {
namespace {

TEST(ProcessMesh, ResolveChecksTheNumbers) {
  EXPECT_EQ(resolve_mesh(8, 0, 2, 2).dp, 2);
  EXPECT_EQ(resolve_mesh(4, 4, 1, 1).dp, 4);
  EXPECT_THROW(resolve_mesh(6, 0, 4, 1), InputError);
  EXPECT_THROW(resolve_mesh(4, 2, 1, 1), InputError);
  EXPECT_THROW(resolve_mesh(4, 0, 0, 1), InputError);
}

TEST(ProcessMesh, GroupsFollowTheLayout) {
  Communicator& world = mpi_world();
  const int n = world.size(), r = world.rank();
  const int tp = n % 2 == 0 ? 2 : 1;
  ProcessMesh mesh(world, resolve_mesh(n, 0, tp, 1));
  EXPECT_EQ(mesh.shape().dp, n / tp);
  EXPECT_EQ(mesh.tp_rank(), r % tp);
  EXPECT_EQ(mesh.dp_rank(), r / tp);
  EXPECT_EQ(mesh.tp().size(), tp);
  EXPECT_EQ(mesh.dp().size(), n / tp);
  EXPECT_EQ(mesh.pp().size(), 1);
  EXPECT_EQ(mesh.dp().rank(), mesh.dp_rank());
  // Summing world ranks over each group identifies its members.
  Tensor t = Tensor::from_vector<int32_t>({r}, {1});
  mesh.tp().all_reduce(t, ReduceOp::kSum)->wait();
  int expect = 0;
  for (int q = (r / tp) * tp; q < (r / tp + 1) * tp; ++q) expect += q;
  EXPECT_EQ(t.data<int32_t>()[0], expect);
  Tensor d = Tensor::from_vector<int32_t>({r}, {1});
  mesh.dp().all_reduce(d, ReduceOp::kSum)->wait();
  expect = 0;
  for (int q = r % tp; q < n; q += tp) expect += q;
  EXPECT_EQ(d.data<int32_t>()[0], expect);
}

}  // namespace
}  // namespace peng
