// Device-tensor communication under mpirun (ctest runs it on 4 ranks and on 3; labels gpu
// and mpi): NcclCommunicator, the host-staged path (StagedCommunicator over MPI) and the
// factory, every op x dtype against closed-form values. Skips without a CUDA device (and the
// NCCL tests without NCCL in the build).
//
// NCCL placement: the first min(ranks, GPUs) ranks form one NCCL group, one GPU each; every
// other rank is a group of one on GPU rank % GPUs. So with one GPU every rank tests world
// size 1, and with several GPUs a real multi-GPU group is tested as well.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "peng/core/cuda/memory.h"
#include "peng/parallel/make_communicator.h"
#include "peng/parallel/mpi/mpi_communicator.h"
#include "peng/parallel/staged_communicator.h"
#include "tests/util/collective_checks.h"

#ifdef PENG_HAS_NCCL
#include <cuda_runtime_api.h>

#include "peng/parallel/nccl/nccl_communicator.h"
#endif

namespace peng {
namespace {

using testing::expect_values;
using testing::filled;
using testing::kAllDTypes;

int gpus() { return cuda::device_count(); }
int my_device() { return mpi_world().rank() % gpus(); }

#define SKIP_WITHOUT_GPU() \
  if (gpus() == 0) GTEST_SKIP() << "no CUDA device"

// ---- the host-staged path: StagedCommunicator over MPI with device tensors ----

TEST(StagedDevice, EveryOpEveryDtype) {
  SKIP_WITHOUT_GPU();
  MpiCommunicator& w = mpi_world();
  StagedCommunicator c(w.split(0, w.rank(), "staged"));
  const int r = c.rank(), n = c.size();
  const Device dev = Device::cuda(my_device());
  const int64_t chunk = 5;
  for (DType dt : kAllDTypes) {
    Tensor s = filled(
        dt, 37, [&](int64_t i) { return r + double(i % 5); }, dev);
    c.all_reduce(s, ReduceOp::kSum)->wait();
    EXPECT_TRUE(s.device() == dev);
    expect_values(
        s, [&](int64_t i) { return n * (n - 1) / 2.0 + n * double(i % 5); }, "sum");
    Tensor m = filled(
        dt, 37, [&](int64_t i) { return double((r * 7 + i) % n); }, dev);
    c.all_reduce(m, ReduceOp::kMax)->wait();
    expect_values(
        m, [&](int64_t) { return double(n - 1); }, "max");
    Tensor a = filled(
        dt, 37, [&](int64_t i) { return 2.0 * r + double(i % 3); }, dev);
    c.all_reduce(a, ReduceOp::kAvg)->wait();
    expect_values(
        a, [&](int64_t i) { return double(n - 1) + double(i % 3); }, "avg");

    Tensor in = filled(
        dt, chunk * n, [&](int64_t i) { return double(r + i); }, dev);
    Tensor out = Tensor::empty({chunk}, dt, dev);
    c.reduce_scatter(in, out, ReduceOp::kSum)->wait();
    expect_values(
        out, [&](int64_t i) { return n * double(r * chunk + i) + n * (n - 1) / 2.0; },
        "reduce_scatter");
    // all_gather from a host tensor into a device one: each side staged on its own.
    Tensor mine = filled(dt, chunk, [&](int64_t i) { return double(10 * r + i); });
    Tensor all = Tensor::empty({chunk * n}, dt, dev);
    c.all_gather(mine, all)->wait();
    expect_values(
        all, [&](int64_t i) { return double(10 * (i / chunk) + i % chunk); }, "all_gather");

    const int root = n - 1;
    Tensor b = filled(
        dt, 9, [&](int64_t i) { return r == root ? double(i + 3) : 0.0; }, dev);
    c.broadcast(b, root)->wait();
    expect_values(
        b, [&](int64_t i) { return double(i + 3); }, "broadcast");
    Tensor tx_buf = filled(
        dt, 4, [&](int64_t i) { return double(r * 4 + i); }, dev);
    Tensor rx_buf = Tensor::empty({4}, dt, dev);
    auto rx = c.recv(rx_buf, (r + n - 1) % n, 7);
    auto tx = c.send(tx_buf, (r + 1) % n, 7);
    tx->wait();
    rx->wait();
    expect_values(
        rx_buf, [&](int64_t i) { return double(((r + n - 1) % n) * 4 + i); }, "ring");
  }
  auto g = c.split(r % 2, -r, "parity");
  Tensor p = filled(
      DType::kF32, 3, [&](int64_t) { return double(r); }, dev);
  g->all_reduce(p, ReduceOp::kSum)->wait();
  double expect = 0;
  for (int q = r % 2; q < n; q += 2) expect += q;
  expect_values(
      p, [&](int64_t) { return expect; }, "split sum");
  c.barrier();
}

#ifdef PENG_HAS_NCCL

// ---- NcclCommunicator ----

const std::vector<DType> kNcclDTypes = {DType::kF32, DType::kF64, DType::kI32, DType::kBF16,
                                        DType::kF16};

// kAvg pre-multiplies floats by 1/size before summing (ncclAvg): allow its rounding.
double avg_tol(DType dt) {
  switch (dt) {
    case DType::kF32:
      return 1e-5;
    case DType::kF64:
      return 1e-12;
    case DType::kBF16:
      return 0.125;
    case DType::kF16:
      return 0.02;
    default:
      return 0;
  }
}

// Runs without a GPU too: a rank that cannot set up (no device, or device index out of range
// on rank 0) makes every rank throw, none waits in ncclCommInitRank.
TEST(NcclSetup, AFailingRankFailsEveryRank) {
  MpiCommunicator& w = mpi_world();
  auto dup = w.split(0, w.rank(), "setup");
  auto& boot = static_cast<MpiCommunicator&>(*dup);
  const int device = w.rank() == 0 || gpus() == 0 ? gpus() : my_device();
  try {
    NcclCommunicator c(boot, device, "setup", 10.0);
    ADD_FAILURE() << "constructed";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("NcclCommunicator for group setup"), std::string::npos) << msg;
    if (w.rank() != 0 && gpus() > 0) {
      EXPECT_NE(msg.find("1 other rank(s) of the group failed to set up"), std::string::npos)
          << msg;
    }
  }
  EXPECT_THROW(NcclCommunicator(boot, 0, "setup", 0.0), Error);  // timeout must be > 0
  w.barrier();
}

class Nccl : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    MpiCommunicator& w = mpi_world();
    const int k = std::min(w.size(), gpus());
    bootstrap_ = w.split(w.rank() < k ? 0 : 1 + w.rank(), w.rank(), "nccl-bootstrap");
    comm_ = std::make_unique<NcclCommunicator>(boot(), my_device(), "nccl", 120.0);
    dev_ = Device::cuda(my_device());
  }
  MpiCommunicator& boot() { return static_cast<MpiCommunicator&>(*bootstrap_); }

  std::unique_ptr<Communicator> bootstrap_;  // outlives comm_
  std::unique_ptr<NcclCommunicator> comm_;
  Device dev_;
};

TEST_F(Nccl, GroupMatchesTheBootstrap) {
  EXPECT_EQ(comm_->rank(), boot().rank());
  EXPECT_EQ(comm_->size(), boot().size());
  EXPECT_EQ(comm_->name(), "nccl");
  EXPECT_EQ(comm_->device(), my_device());
  EXPECT_NE(comm_->comm_stream(), nullptr);
  EXPECT_EQ(comm_->compute_stream(), nullptr);
  comm_->barrier();
  comm_->barrier();
}

TEST_F(Nccl, AllReduceEveryDtype) {
  const int q = comm_->rank(), g = comm_->size();
  for (DType dt : kNcclDTypes) {
    Tensor s = filled(
        dt, 37, [&](int64_t i) { return q + double(i % 5); }, dev_);
    comm_->all_reduce(s, ReduceOp::kSum)->wait();
    expect_values(
        s, [&](int64_t i) { return g * (g - 1) / 2.0 + g * double(i % 5); }, "sum");
    Tensor m = filled(
        dt, 37, [&](int64_t i) { return double((q * 7 + i) % g); }, dev_);
    comm_->all_reduce(m, ReduceOp::kMax)->wait();
    expect_values(
        m, [&](int64_t) { return double(g - 1); }, "max");
    Tensor a = filled(
        dt, 37, [&](int64_t i) { return 2.0 * q + double(i % 3); }, dev_);
    comm_->all_reduce(a, ReduceOp::kAvg)->wait();
    expect_values(
        a, [&](int64_t i) { return double(g - 1) + double(i % 3); }, "avg", avg_tol(dt));
  }
  // Several in flight at once, waited out of order.
  Tensor x = filled(
      DType::kF32, 1000, [&](int64_t i) { return double(i % 7); }, dev_);
  Tensor y = filled(
      DType::kI32, 3, [&](int64_t) { return 1.0; }, dev_);
  auto wx = comm_->all_reduce(x, ReduceOp::kSum);
  auto wy = comm_->all_reduce(y, ReduceOp::kSum);
  wy->wait();
  wx->wait();
  wx->wait();  // a second wait is a no-op
  expect_values(
      x, [&](int64_t i) { return g * double(i % 7); }, "in flight");
  expect_values(
      y, [&](int64_t) { return double(g); }, "in flight");
  // A Work dropped without wait() still orders later compute (here a copy) after the op.
  Tensor z = filled(
      DType::kF32, 1 << 20, [&](int64_t) { return 1.0; }, dev_);
  { auto dropped = comm_->all_reduce(z, ReduceOp::kSum); }
  expect_values(
      z, [&](int64_t) { return double(g); }, "dropped work");
  // Checked before anything is enqueued, so every rank throws.
  Tensor u = Tensor::zeros({4}, DType::kU16, dev_);
  EXPECT_THROW(comm_->all_reduce(u, ReduceOp::kSum), Error);
  Tensor host = Tensor::zeros({4});
  EXPECT_THROW(comm_->all_reduce(host, ReduceOp::kSum), Error);
}

TEST_F(Nccl, ReduceScatterAndAllGather) {
  const int q = comm_->rank(), g = comm_->size();
  const int64_t chunk = 5;
  for (DType dt : kNcclDTypes) {
    Tensor in = filled(
        dt, chunk * g, [&](int64_t i) { return double(q + i); }, dev_);
    Tensor out = Tensor::empty({chunk}, dt, dev_);
    comm_->reduce_scatter(in, out, ReduceOp::kSum)->wait();
    expect_values(
        out, [&](int64_t i) { return g * double(q * chunk + i) + g * (g - 1) / 2.0; },
        "reduce_scatter");
    Tensor mx = Tensor::empty({chunk}, dt, dev_);
    comm_->reduce_scatter(in, mx, ReduceOp::kMax)->wait();
    expect_values(
        mx, [&](int64_t i) { return double(q * chunk + i) + (g - 1); }, "reduce_scatter max");
  }
  for (DType dt : kAllDTypes) {  // u16 moves as bytes
    Tensor mine = filled(
        dt, chunk, [&](int64_t i) { return double(10 * q + i); }, dev_);
    Tensor all = Tensor::empty({chunk * g}, dt, dev_);
    comm_->all_gather(mine, all)->wait();
    expect_values(
        all, [&](int64_t i) { return double(10 * (i / chunk) + i % chunk); }, "all_gather");
  }
  Tensor bad = Tensor::empty({chunk * g + 1}, DType::kF32, dev_);
  Tensor out = Tensor::empty({chunk}, DType::kF32, dev_);
  EXPECT_THROW(comm_->reduce_scatter(bad, out, ReduceOp::kSum), Error);
  Tensor u_in = Tensor::zeros({chunk * g}, DType::kU16, dev_);
  Tensor u_out = Tensor::zeros({chunk}, DType::kU16, dev_);
  EXPECT_THROW(comm_->reduce_scatter(u_in, u_out, ReduceOp::kSum), Error);
}

// Grouped send/recv pairs with variable counts, empty blocks included; u16 moves as bytes.
TEST_F(Nccl, AllToAllV) { testing::check_all_to_all_v(*comm_, kAllDTypes, dev_); }

TEST_F(Nccl, BroadcastAndPointToPoint) {
  const int q = comm_->rank(), g = comm_->size();
  const int prev = (q + g - 1) % g, next = (q + 1) % g;
  for (DType dt : kAllDTypes) {
    const int root = g - 1;
    Tensor t = filled(
        dt, 9, [&](int64_t i) { return q == root ? double(i + 3) : 0.0; }, dev_);
    comm_->broadcast(t, root)->wait();
    expect_values(
        t, [&](int64_t i) { return double(i + 3); }, "broadcast");
    // Ring (send/recv to self at size 1): recv first, both in flight, waited either way round.
    Tensor out = filled(
        dt, 4, [&](int64_t i) { return double(q * 4 + i); }, dev_);
    Tensor in = Tensor::zeros({4}, dt, dev_);
    auto rx = comm_->recv(in, prev, 7);
    auto tx = comm_->send(out, next, 7);
    if (dt == DType::kF32) {
      rx->wait();
      tx->wait();
    } else {
      tx->wait();
      rx->wait();
    }
    expect_values(
        in, [&](int64_t i) { return double(prev * 4 + i); }, "ring");
  }
  // Deferred send/recv are issued before the next collective, and by dropped Works.
  Tensor out = filled(
      DType::kF32, 6, [&](int64_t i) { return double(q + i); }, dev_);
  Tensor in = Tensor::zeros({6}, DType::kF32, dev_);
  Tensor s = filled(
      DType::kF32, 2, [&](int64_t) { return 1.0; }, dev_);
  {
    auto tx = comm_->send(out, next);
    auto rx = comm_->recv(in, prev);
    comm_->all_reduce(s, ReduceOp::kSum)->wait();
  }
  expect_values(
      in, [&](int64_t i) { return double(prev + i); }, "p2p before a collective");
  expect_values(
      s, [&](int64_t) { return double(g); }, "collective after p2p");
  Tensor one = Tensor::zeros({1}, DType::kF32, dev_);
  EXPECT_THROW(comm_->broadcast(one, g), Error);  // root outside the group
  EXPECT_THROW(comm_->send(one, g), Error);       // peer outside the group
}

TEST_F(Nccl, SplitAndBarrier) {
  const int q = comm_->rank(), g = comm_->size();
  EXPECT_THROW(comm_->split(-1, 0, "bad"), Error);
  auto sub = comm_->split(q % 2, -q, "parity");
  ASSERT_NE(dynamic_cast<NcclCommunicator*>(sub.get()), nullptr);
  const int members = (g + 1 - q % 2) / 2;
  EXPECT_EQ(sub->size(), members);
  EXPECT_EQ(sub->name(), "parity");
  int highest = q % 2;
  while (highest + 2 < g) highest += 2;
  EXPECT_EQ(sub->rank(), (highest - q) / 2);  // key -q: the highest rank comes first
  for (DType dt : kNcclDTypes) {
    Tensor a = filled(
        dt, 3, [&](int64_t) { return double(q); }, dev_);
    sub->all_reduce(a, ReduceOp::kSum)->wait();
    double expect = 0;
    for (int p = q % 2; p < g; p += 2) expect += p;
    expect_values(
        a, [&](int64_t) { return expect; }, "split sum");
  }
  sub->barrier();
  comm_->barrier();
}

// With a compute stream of its own: its copies in, the collective, its copies out, and no
// other synchronisation than the communicator's events.
TEST_F(Nccl, OrdersAgainstTheComputeStream) {
  cudaStream_t compute = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), cudaSuccess);
  {
    NcclCommunicator c(boot(), my_device(), "ordered", 120.0, compute);
    EXPECT_EQ(c.compute_stream(), compute);
    const int q = c.rank(), g = c.size();
    const int64_t n = 1 << 22;
    float* pinned = nullptr;
    ASSERT_EQ(cudaMallocHost(&pinned, n * sizeof(float)), cudaSuccess);
    for (int round = 0; round < 3; ++round) {
      for (int64_t i = 0; i < n; ++i) pinned[i] = float(q + round + i % 11);
      Tensor t = Tensor::empty({n}, DType::kF32, dev_);
      ASSERT_EQ(
          cudaMemcpyAsync(t.raw_data(), pinned, n * sizeof(float), cudaMemcpyHostToDevice, compute),
          cudaSuccess);
      c.all_reduce(t, ReduceOp::kSum)->wait();
      ASSERT_EQ(
          cudaMemcpyAsync(pinned, t.raw_data(), n * sizeof(float), cudaMemcpyDeviceToHost, compute),
          cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(compute), cudaSuccess);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(pinned[i], float(g * (g - 1) / 2 + g * (round + i % 11))) << "round " << round;
      }
    }
    cudaFreeHost(pinned);
  }
  cudaStreamDestroy(compute);
}

// Needs a group of two GPUs: one rank issues an all_reduce its peers never join.
TEST_F(Nccl, TimeoutAbortsAndNamesTheCollective) {
  if (comm_->size() < 2) GTEST_SKIP() << "needs an NCCL group of 2 GPUs";
  NcclCommunicator c(boot(), my_device(), "short", 2.0);
  Tensor t = Tensor::zeros({1024}, DType::kF32, dev_);
  // Together first: NCCL connects peers lazily on first use, and a connection to an absent
  // peer would block inside the enqueue call rather than time out in wait().
  c.all_reduce(t, ReduceOp::kSum)->wait();
  if (c.rank() == 0) {
    auto w = c.all_reduce(t, ReduceOp::kSum);
    try {
      w->wait();
      ADD_FAILURE() << "wait() returned";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(
                    "all_reduce on group short (collective #2) did not complete within 2 s"),
                std::string::npos)
          << e.what();
      // The peers are alive (in the MPI barrier below) and answer the watchdog's question.
      EXPECT_NE(std::string(e.what()).find("world rank 1 is at collective #1 on group short"),
                std::string::npos)
          << e.what();
    }
    EXPECT_THROW(c.all_reduce(t, ReduceOp::kSum), Error);  // the group is aborted
  }
  boot().barrier();
  c.abort();
  comm_->barrier();  // other communicators are unaffected
}

TEST(MakeDeviceCommunicatorGpu, AutoNeedsOneGpuPerRank) {
  SKIP_WITHOUT_GPU();
  MpiCommunicator& w = mpi_world();
  const int r = w.rank(), n = w.size();
  // ctest's ranks all run on this node.
  const bool fits = n <= gpus();
  auto chosen = make_device_communicator("auto", w, Device::cuda(my_device()), 120.0);
  if (fits) {
    EXPECT_NE(dynamic_cast<NcclCommunicator*>(chosen.get()), nullptr);
    auto nccl = make_device_communicator("nccl", w, Device::cuda(my_device()), 120.0);
    EXPECT_NE(dynamic_cast<NcclCommunicator*>(nccl.get()), nullptr);
  } else {
    EXPECT_NE(dynamic_cast<StagedCommunicator*>(chosen.get()), nullptr);
    EXPECT_THROW(make_device_communicator("nccl", w, Device::cuda(my_device()), 120.0), InputError);
  }
  Tensor t = filled(
      DType::kF32, 8, [&](int64_t i) { return double(r + i); }, Device::cuda(my_device()));
  chosen->all_reduce(t, ReduceOp::kSum)->wait();
  expect_values(
      t, [&](int64_t i) { return n * (n - 1) / 2.0 + n * double(i); }, "factory auto");
  chosen->barrier();
}

#else  // no NCCL in this build

TEST(Nccl, NotBuilt) {
  EXPECT_FALSE(compiled_with_nccl());
  GTEST_SKIP() << "this build has no NCCL";
}

#endif

}  // namespace
}  // namespace peng
