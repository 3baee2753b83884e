// MpiCommunicator under mpirun (ctest runs it on 4 ranks, and on 3 for uneven groups):
// every op x dtype against closed-form values, nccl-tests style.
#include "peng/parallel/mpi/mpi_communicator.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "tests/util/collective_checks.h"

namespace peng {
namespace {

using testing::expect_values;
using testing::filled;

TEST(MpiCommunicator, AllReduceSumMaxAvgEveryDtype) {
  Communicator& c = mpi_world();
  testing::check_all_reduce(c, testing::kAllDTypes);
}

TEST(MpiCommunicator, ReduceScatterAndAllGather) {
  Communicator& c = mpi_world();
  testing::check_reduce_scatter_and_all_gather(c, testing::kAllDTypes);
}

// The ring reduce-scatter with max and avg, and several in flight at once, waited in a
// different order on even and odd ranks (each ring has its own message tag).
TEST(MpiCommunicator, ReduceScatterMaxAvgAndInFlightTogether) {
  Communicator& c = mpi_world();
  const int r = c.rank(), n = c.size();
  const int64_t chunk = 7;
  Tensor in = filled(DType::kF32, chunk * n, [&](int64_t i) { return double((r * 5 + i) % n); });
  Tensor mx = Tensor::empty({chunk});
  c.reduce_scatter(in, mx, ReduceOp::kMax)->wait();
  expect_values(
      mx, [&](int64_t) { return double(n - 1); }, "max");
  Tensor avg_in = filled(DType::kF64, chunk * n, [&](int64_t i) { return double(2 * r + i); });
  Tensor avg = Tensor::empty({chunk}, DType::kF64);
  c.reduce_scatter(avg_in, avg, ReduceOp::kAvg)->wait();
  expect_values(
      avg, [&](int64_t i) { return double(r * chunk + i) + (n - 1); }, "avg");

  std::vector<Tensor> ins, outs;
  std::vector<std::unique_ptr<Work>> works;
  for (int k = 0; k < 3; ++k) {
    ins.push_back(filled(DType::kI32, chunk * n, [&](int64_t i) { return double(k * r + i); }));
    outs.push_back(Tensor::empty({chunk}, DType::kI32));
    works.push_back(c.reduce_scatter(ins.back(), outs.back(), ReduceOp::kSum));
  }
  for (int k = 0; k < 3; ++k) works[size_t(r % 2 ? k : 2 - k)]->wait();
  for (int k = 0; k < 3; ++k) {
    expect_values(
        outs[size_t(k)],
        [&](int64_t i) { return n * double(r * chunk + i) + k * n * (n - 1) / 2.0; },
        "in flight " + std::to_string(k));
  }
}

TEST(MpiCommunicator, BroadcastAndRing) {
  Communicator& c = mpi_world();
  testing::check_broadcast_and_ring(c, testing::kAllDTypes);
}

// Variable counts per pair, empty blocks included (Megatron's token dispatch).
TEST(MpiCommunicator, AllToAllV) {
  Communicator& c = mpi_world();
  testing::check_all_to_all_v(c, testing::kAllDTypes);
  std::unique_ptr<Communicator> half = c.split(c.rank() % 2, c.rank(), "half");
  testing::check_all_to_all_v(*half, {DType::kF32});
}

TEST(MpiCommunicator, SplitGroupsAndConcurrentOps) {
  Communicator& c = mpi_world();
  const int r = c.rank(), n = c.size();
  // Even and odd ranks, ordered by descending rank.
  auto g = c.split(r % 2, -r, "parity");
  const int members = (n + 1 - r % 2) / 2;
  EXPECT_EQ(g->size(), members);
  EXPECT_EQ(g->name(), "parity");
  Tensor a = filled(DType::kF32, 3, [&](int64_t) { return double(r); });
  Tensor b = filled(DType::kI32, 3, [&](int64_t) { return 1.0; });
  auto wa = g->all_reduce(a, ReduceOp::kSum);
  auto wb = g->all_reduce(b, ReduceOp::kSum);
  wb->wait();
  wa->wait();
  double expect = 0;
  for (int q = r % 2; q < n; q += 2) expect += q;
  expect_values(
      a, [&](int64_t) { return expect; }, "split sum");
  expect_values(
      b, [&](int64_t) { return double(members); }, "split count");
  // Key -r: the highest rank of each parity is rank 0 of its group.
  int highest = r % 2;
  while (highest + 2 < n) highest += 2;
  EXPECT_EQ(g->rank(), (highest - r) / 2);
  g->barrier();
}

// A rank that waits on something else first still moves its part of a reduce-scatter on
// (as a native MPI collective would), and the result may be written in place into chunk r.
TEST(MpiCommunicator, ReduceScatterProgressesWhileWaitingElsewhereAndInPlace) {
  MpiCommunicator& world = mpi_world();
  auto group = world.split(0, world.rank(), "rs");
  auto* c = static_cast<MpiCommunicator*>(group.get());
  c->set_timeout(20);  // a regression fails, not hangs
  const int r = c->rank(), n = c->size();
  const int64_t chunk = 6;
  Tensor in = filled(DType::kF32, chunk * n, [&](int64_t i) { return double(r + i); });
  Tensor out = in.flat_view(r * chunk, {chunk});  // in place: chunk r of `in`
  auto rs = c->reduce_scatter(in, out, ReduceOp::kSum);
  Tensor token = Tensor::from_vector<float>({float(r)}, {1});
  if (r == 0) {
    c->recv(token, 1, 5)->wait();  // rank 1 sends only after its reduce-scatter completed
    EXPECT_EQ(token.data<float>()[0], 1.0f);
    rs->wait();
  } else {
    rs->wait();
    if (r == 1) c->send(token, 0, 5)->wait();
  }
  expect_values(
      out, [&](int64_t i) { return n * double(r * chunk + i) + n * (n - 1) / 2.0; }, "in place");
}

// A collective that one rank never joins: the others' wait() throws CollectiveTimeout within
// the group's timeout, naming the collective, its number, its group and the missing rank
// (whose responder thread still answers: it is alive, just elsewhere).
TEST(MpiCommunicator, TimeoutNamesTheRankThatDidNotArrive) {
  MpiCommunicator& world = mpi_world();
  auto group = world.split(0, world.rank(), "late");
  auto* late = static_cast<MpiCommunicator*>(group.get());
  late->set_timeout(1.0);
  Tensor warmup = Tensor::from_vector<float>({1.0f}, {1});
  late->all_reduce(warmup, ReduceOp::kSum)->wait();                // collective #1: everyone
  static Tensor orphan = Tensor::from_vector<float>({1.0f}, {1});  // outlives the request
  if (world.rank() != 1) {
    try {
      late->all_reduce(orphan, ReduceOp::kSum)->wait();
      ADD_FAILURE() << "all_reduce completed without rank 1";
    } catch (const CollectiveTimeout& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("all_reduce on group late (collective #2) did not complete within 1 s"),
                std::string::npos)
          << msg;
      EXPECT_NE(msg.find("world rank 1 is at collective #1 on group late"), std::string::npos)
          << msg;
      EXPECT_EQ(msg.find("world rank 0 "), std::string::npos) << msg;
    }
  }
  world.barrier();
  // Rank 1 now joins, completing the orphaned requests of the others.
  if (world.rank() == 1) late->all_reduce(orphan, ReduceOp::kSum)->wait();
  world.barrier();
}

// Two live groups of one name: the watchdog keeps their collectives apart (keyed by the
// members too), so rank 1, busy on the other "twin" group, is not taken for arrived.
TEST(MpiCommunicator, TimeoutTellsGroupsOfOneNameApart) {
  MpiCommunicator& world = mpi_world();
  auto a = world.split(world.rank() % 2, world.rank(), "twin");
  auto b_group = world.split(world.rank() < 2 ? 0 : 1, world.rank(), "twin");
  auto* b = static_cast<MpiCommunicator*>(b_group.get());
  b->set_timeout(1.0);
  Tensor t = Tensor::from_vector<float>({1.0f}, {1});
  a->all_reduce(t, ReduceOp::kSum)->wait();  // collective #1 of the first "twin"
  static Tensor orphan = Tensor::from_vector<float>({1.0f}, {1});
  if (world.rank() == 0) {
    try {
      b->all_reduce(orphan, ReduceOp::kSum)->wait();
      ADD_FAILURE() << "all_reduce completed without rank 1";
    } catch (const CollectiveTimeout& e) {
      EXPECT_NE(
          std::string(e.what()).find("world rank 1 has not entered any collective on group twin"),
          std::string::npos)
          << e.what();
    }
  }
  world.barrier();
  if (world.rank() == 1) b->all_reduce(orphan, ReduceOp::kSum)->wait();
  world.barrier();
}

}  // namespace
}  // namespace peng
