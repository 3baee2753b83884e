// StagedCommunicator over MpiCommunicator under mpirun (ctest runs it on 4 ranks and on 3),
// with host tensors: every op x dtype against closed-form values; and the device-communicator
// factory's choices on this machine. (Device tensors through the staged path:
// tests/gpu/nccl_communicator_mpi_test.cc.)
#include "parallel/staged_communicator.h"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "core/cuda/memory.h"
#include "parallel/make_communicator.h"
#include "parallel/mpi/mpi_communicator.h"

namespace peng {
namespace {

const std::vector<DType> kDTypes = {DType::kF32, DType::kF64,  DType::kI32,
                                    DType::kU16, DType::kBF16, DType::kF16};

// Small integers are exact in every dtype.
Tensor filled(DType dt, int64_t n, const std::function<double(int64_t)>& f) {
  Tensor t = Tensor::empty({n}, DType::kF64);
  for (int64_t i = 0; i < n; ++i) t.data<double>()[i] = f(i);
  return t.to_dtype(dt);
}

void expect_values(const Tensor& t, const std::function<double(int64_t)>& f,
                   const std::string& what) {
  Tensor d = t.to_dtype(DType::kF64);
  for (int64_t i = 0; i < d.numel(); ++i) {
    ASSERT_EQ(d.data<double>()[i], f(i))
        << what << " " << dtype_name(t.dtype()) << " [" << i << "]";
  }
}

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
  const int r = c.rank(), n = c.size();
  for (DType dt : kDTypes) {
    Tensor s = filled(dt, 37, [&](int64_t i) { return r + double(i % 5); });
    c.all_reduce(s, ReduceOp::kSum)->wait();
    expect_values(
        s, [&](int64_t i) { return n * (n - 1) / 2.0 + n * double(i % 5); }, "sum");
    Tensor m = filled(dt, 37, [&](int64_t i) { return double((r * 7 + i) % n); });
    c.all_reduce(m, ReduceOp::kMax)->wait();
    expect_values(
        m, [&](int64_t) { return double(n - 1); }, "max");
    Tensor a = filled(dt, 37, [&](int64_t i) { return 2.0 * r + double(i % 3); });
    c.all_reduce(a, ReduceOp::kAvg)->wait();
    expect_values(
        a, [&](int64_t i) { return double(n - 1) + double(i % 3); }, "avg");
  }
}

TEST(StagedCommunicator, ReduceScatterAndAllGather) {
  StagedCommunicator c = staged_world();
  const int r = c.rank(), n = c.size();
  const int64_t chunk = 5;
  for (DType dt : kDTypes) {
    Tensor in = filled(dt, chunk * n, [&](int64_t i) { return double(r + i); });
    Tensor out = Tensor::empty({chunk}, dt);
    c.reduce_scatter(in, out, ReduceOp::kSum)->wait();
    expect_values(
        out, [&](int64_t i) { return n * double(r * chunk + i) + n * (n - 1) / 2.0; },
        "reduce_scatter");
    Tensor mine = filled(dt, chunk, [&](int64_t i) { return double(10 * r + i); });
    Tensor all = Tensor::empty({chunk * n}, dt);
    c.all_gather(mine, all)->wait();
    expect_values(
        all, [&](int64_t i) { return double(10 * (i / chunk) + i % chunk); }, "all_gather");
  }
  Tensor bad = Tensor::empty({chunk * n + 1});
  Tensor out = Tensor::empty({chunk});
  EXPECT_THROW(c.reduce_scatter(bad, out, ReduceOp::kSum), Error);
}

TEST(StagedCommunicator, BroadcastAndRing) {
  StagedCommunicator c = staged_world();
  const int r = c.rank(), n = c.size();
  for (DType dt : kDTypes) {
    const int root = n - 1;
    Tensor t = filled(dt, 9, [&](int64_t i) { return r == root ? double(i + 3) : 0.0; });
    c.broadcast(t, root)->wait();
    expect_values(
        t, [&](int64_t i) { return double(i + 3); }, "broadcast");
    Tensor out = filled(dt, 4, [&](int64_t i) { return double(r * 4 + i); });
    Tensor in = Tensor::empty({4}, dt);
    auto rx = c.recv(in, (r + n - 1) % n, 7);
    auto tx = c.send(out, (r + 1) % n, 7);
    tx->wait();
    rx->wait();
    expect_values(
        in, [&](int64_t i) { return double(((r + n - 1) % n) * 4 + i); }, "ring");
  }
  Tensor one = Tensor::empty({1});
  EXPECT_THROW(c.broadcast(one, n), Error);  // root outside the group
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
  EXPECT_THROW(make_device_communicator("gloo", world, 0, 60), InputError);
  auto mpi = make_device_communicator("mpi", world, 0, 60, "dp");
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
    EXPECT_THROW(make_device_communicator("nccl", world, 0, 60), InputError);
    auto chosen = make_device_communicator("auto", world, 0, 60);
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
