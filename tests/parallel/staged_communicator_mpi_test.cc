// StagedCommunicator over MpiCommunicator under mpirun (ctest runs it on 4 ranks and on 3),
// with host tensors: every op x dtype against closed-form values; and the device-communicator
// factory's choices on this machine. (Device tensors through the staged path:
// tests/gpu/nccl_communicator_mpi_test.cc.)
#include "peng/parallel/staged_communicator.h"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "peng/core/cuda/memory.h"
#include "peng/parallel/make_communicator.h"
#include "peng/parallel/mpi/mpi_communicator.h"
#include "tests/util/collective_checks.h"

namespace peng {
namespace {

using testing::expect_values;
using testing::filled;

StagedCommunicator staged_world() {
  MpiCommunicator& w = mpi_world();
  return StagedCommunicator(w.split(0, w.rank(), "staged"));
}

TEST(StagedCommunicator, ForwardsTheGroup) {
  StagedCommunicator c = staged_world();
  EXPECT_EQ(c.rank(), mpi_world().rank());
  EXPECT_EQ(c.size(), mpi_world().size());
  EXPECT_EQ(c.name(), "staged");
  EXPECT_THROW(StagedCommunicator(nullptr), Error);
  c.barrier();
}

TEST(StagedCommunicator, AllReduceEveryDtype) {
  StagedCommunicator c = staged_world();
  testing::check_all_reduce(c, testing::kAllDTypes);
}

TEST(StagedCommunicator, ReduceScatterAndAllGather) {
  StagedCommunicator c = staged_world();
  testing::check_reduce_scatter_and_all_gather(c, testing::kAllDTypes);
}

TEST(StagedCommunicator, BroadcastAndRing) {
  StagedCommunicator c = staged_world();
  testing::check_broadcast_and_ring(c, testing::kAllDTypes);
}

TEST(StagedCommunicator, AllToAllV) {
  StagedCommunicator c = staged_world();
  testing::check_all_to_all_v(c, testing::kAllDTypes);
}

TEST(StagedCommunicator, SplitAndDroppedWork) {
  StagedCommunicator c = staged_world();
  const int r = c.rank(), n = c.size();
  auto g = c.split(r % 2, -r, "parity");
  EXPECT_NE(dynamic_cast<StagedCommunicator*>(g.get()), nullptr);
  EXPECT_EQ(g->size(), (n + 1 - r % 2) / 2);
  EXPECT_EQ(g->name(), "parity");
  Tensor a = filled(DType::kF32, 3, [&](int64_t) { return double(r); });
  g->all_reduce(a, ReduceOp::kSum)->wait();
  double expect = 0;
  for (int q = r % 2; q < n; q += 2) expect += q;
  expect_values(
      a, [&](int64_t) { return expect; }, "split sum");
  // A Work dropped without wait() completes in its destructor (no dangling buffers).
  Tensor b = filled(DType::kI32, 3, [&](int64_t) { return 1.0; });
  { auto dropped = g->all_reduce(b, ReduceOp::kSum); }
  expect_values(
      b, [&](int64_t) { return double(g->size()); }, "dropped work");
  g->barrier();
}

TEST(MakeDeviceCommunicator, ChoosesAndChecks) {
  MpiCommunicator& world = mpi_world();
  const int r = world.rank(), n = world.size();
  EXPECT_THROW(make_device_communicator("gloo", world, Device::cpu(), 60), InputError);
  EXPECT_THROW(make_device_communicator("mpi", world, Device::cpu(), 60), InputError);
  // The CPU backend's host tensors: nccl is refused on every rank, auto is the staged path.
  EXPECT_THROW(make_device_communicator("nccl", world, Device::cpu(), 60), InputError);
  auto cpu_auto = make_device_communicator("auto", world, Device::cpu(), 60, "cpu-auto");
  EXPECT_NE(dynamic_cast<StagedCommunicator*>(cpu_auto.get()), nullptr);
  EXPECT_FALSE(cpu_auto->stream_ordered());
  auto mpi = make_device_communicator("staged", world, Device::cpu(), 60, "dp");
  ASSERT_NE(dynamic_cast<StagedCommunicator*>(mpi.get()), nullptr);
  EXPECT_EQ(mpi->name(), "dp");
  EXPECT_EQ(mpi->size(), n);
  EXPECT_EQ(mpi->rank(), r);
  Tensor t = filled(DType::kF32, 4, [&](int64_t i) { return double(r + i); });
  mpi->all_reduce(t, ReduceOp::kSum)->wait();
  expect_values(
      t, [&](int64_t i) { return n * (n - 1) / 2.0 + n * double(i); }, "factory mpi");
  const int gpus = cuda::device_count();
  if (!compiled_with_nccl() || gpus == 0) {
    // Without NCCL or a GPU: nccl is an input error on every rank, auto is the staged path.
    EXPECT_THROW(make_device_communicator("nccl", world, Device::cuda(0), 60), InputError);
    auto chosen = make_device_communicator("auto", world, Device::cuda(0), 60);
    EXPECT_NE(dynamic_cast<StagedCommunicator*>(chosen.get()), nullptr);
    Tensor u = filled(DType::kI32, 2, [&](int64_t) { return 1.0; });
    chosen->all_reduce(u, ReduceOp::kSum)->wait();
    expect_values(
        u, [&](int64_t) { return double(n); }, "factory auto");
  }
  world.barrier();
}

}  // namespace
}  // namespace peng
