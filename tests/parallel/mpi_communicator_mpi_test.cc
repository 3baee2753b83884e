// MpiCommunicator under mpirun (ctest runs it on 4 ranks, and on 3 for uneven groups):
// every op x dtype against closed-form values, nccl-tests style.
#include "parallel/mpi/mpi_communicator.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

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

TEST(MpiCommunicator, AllReduceSumMaxAvgEveryDtype) {
  Communicator& c = mpi_world();
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

TEST(MpiCommunicator, ReduceScatterAndAllGather) {
  Communicator& c = mpi_world();
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
  const int r = c.rank(), n = c.size();
  for (DType dt : kDTypes) {
    const int root = n - 1;
    Tensor t = filled(dt, 9, [&](int64_t i) { return r == root ? double(i + 3) : 0.0; });
    c.broadcast(t, root)->wait();
    expect_values(
        t, [&](int64_t i) { return double(i + 3); }, "broadcast");
    // Each rank sends to the next and receives from the previous, both in flight at once.
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
