// GradReducer under mpirun (3 and 4 ranks): bucket layout, all-reduce and reduce-scatter
// against closed-form sums, accumulation, the owned spans and the parameter all-gather; each
// with the collectives issued by the communication thread and inline on the main thread (the
// NCCL way, here over MPI), and reduced in f32 and in bf16.
#include "peng/parallel/data_parallel/grad_reducer.h"

#include <gtest/gtest.h>

#include <functional>

#include "peng/parallel/mpi/mpi_communicator.h"

namespace peng {
namespace {

// Parameters of awkward sizes: 1000 + 37 + 333 + 7 elements.
void add_params(ParameterSet& ps) {
  ps.add("a.weight", {40, 25});
  ps.add("a.bias", {37});
  ps.add("b.weight", {9, 37});
  ps.add("b.bias", {7});
  ps.finalize();
}

// Rank r's gradient element i, and its sum over n ranks.
float grad_of(int r, int64_t i) { return float((r + 1) * (i % 11) + i % 3); }
float grad_sum(int n, int64_t i) { return float(n * (n + 1) / 2 * (i % 11) + n * (i % 3)); }

void fill_grads(ParameterSet& ps, int r) {
  float* g = ps.flat_grads().data<float>();
  for (int64_t i = 0; i < ps.numel(); ++i) g[i] = grad_of(r, i);
}

// Announces finished gradients the way a backward pass does: parameter by parameter,
// last first.
void backward_announces(ParameterSet& ps) {
  for (auto it = ps.all().rbegin(); it != ps.all().rend(); ++it) ps.grads_ready_from(it->offset);
}

using Issue = GradReducer::Issue;
using Mode = GradReducer::Mode;

GradReducer::Options options(int64_t bucket_bytes, Mode mode, Issue issue,
                             DType dtype = DType::kF32) {
  return {.bucket_bytes = bucket_bytes, .mode = mode, .reduce_dtype = dtype, .issue = issue};
}

// Each test runs with both ways of issuing the collectives.
class GradReducerIssue : public ::testing::TestWithParam<Issue> {};

TEST(GradReducer, BucketsTileTheBufferFromTheEnd) {
  Communicator& world = mpi_world();
  ParameterSet ps;
  add_params(ps);
  GradReducer red(ps, world, cpu_backend(),
                  {.bucket_bytes = 400 * 4, .mode = Mode::kReduceScatter});
  EXPECT_EQ(red.issue(), Issue::kThread) << "MPI is not stream-ordered";
  const auto& b = red.buckets();
  const int64_t n = world.size();
  ASSERT_GE(b.size(), 3u);
  int64_t hi = ps.numel(), owned = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_EQ(b[i].offset + b[i].numel, hi) << "bucket " << i;
    EXPECT_EQ(b[i].padded % n, 0);
    if (b[i].offset > 0) {
      EXPECT_EQ(b[i].numel % n, 0) << "only the bucket at 0 is padded";
    }
    EXPECT_LE(b[i].numel * 4, 400 * 4);
    hi = b[i].offset;
  }
  EXPECT_EQ(hi, 0);
  for (const FlatSpan& s : red.owned()) owned += s.numel;
  Tensor total = Tensor::from_vector<double>({double(owned)}, {1});
  world.all_reduce(total, ReduceOp::kSum)->wait();
  EXPECT_EQ(total.data<double>()[0], double(ps.numel())) << "owned spans partition the buffer";
}

TEST_P(GradReducerIssue, AllReduceSumsEveryBucketInPlace) {
  Communicator& world = mpi_world();
  for (int64_t bucket_bytes : {int64_t(64), int64_t(1000), int64_t(25'000'000)}) {
    ParameterSet ps;
    add_params(ps);
    GradReducer red(ps, world, cpu_backend(), options(bucket_bytes, Mode::kAllReduce, GetParam()));
    EXPECT_EQ(red.issue(), GetParam());
    for (int pass = 0; pass < 2; ++pass) {
      fill_grads(ps, world.rank());
      red.arm();
      backward_announces(ps);
      red.wait();
      const float* g = ps.flat_grads().data<float>();
      for (int64_t i = 0; i < ps.numel(); ++i) {
        ASSERT_EQ(g[i], grad_sum(world.size(), i))
            << "bucket bytes " << bucket_bytes << " [" << i << "]";
      }
    }
  }
}

TEST_P(GradReducerIssue, ReduceScatterFillsTheOwnedChunksAndAccumulates) {
  Communicator& world = mpi_world();
  const int n = world.size();
  ParameterSet ps;
  add_params(ps);
  GradReducer red(ps, world, cpu_backend(), options(1000, Mode::kReduceScatter, GetParam()));
  fill_grads(ps, world.rank());
  red.arm();
  red.wait();  // nothing announced: wait() reduces every bucket itself
  const float* shard = red.shard_grads().data<float>();
  for (const FlatSpan& s : red.owned()) {
    for (int64_t k = 0; k < s.numel; ++k) {
      ASSERT_EQ(shard[s.state_offset + k], grad_sum(n, s.offset + k));
    }
  }
  fill_grads(ps, world.rank());
  red.arm(/*accumulate=*/true);
  backward_announces(ps);
  red.wait();
  for (const FlatSpan& s : red.owned()) {
    for (int64_t k = 0; k < s.numel; ++k) {
      ASSERT_EQ(shard[s.state_offset + k], 2 * grad_sum(n, s.offset + k));
    }
  }
}

TEST_P(GradReducerIssue, AllGatherGivesEveryRankEveryOwnedValue) {
  Communicator& world = mpi_world();
  ParameterSet ps;
  add_params(ps);
  GradReducer red(ps, world, cpu_backend(), options(1000, Mode::kReduceScatter, GetParam()));
  float* v = ps.flat_values().data<float>();
  for (int64_t i = 0; i < ps.numel(); ++i) v[i] = -1.0f;  // stale everywhere...
  for (const FlatSpan& s : red.owned()) {
    for (int64_t k = 0; k < s.numel; ++k) v[s.offset + k] = float(s.offset + k);  // ...but own
  }
  red.all_gather_values();
  for (int64_t i = 0; i < ps.numel(); ++i) ASSERT_EQ(v[i], float(i)) << i;
}

// bf16 on the wire. The closed-form gradients are small integers, exact in bf16 (8 bits of
// mantissa), so the sums are exact; 1 + 2^-10 is not: it rounds to 1 before the reduction, so
// a bf16 reduction gives n where f32 gives n (1 + 2^-10). Every mode, both issue ways.
TEST_P(GradReducerIssue, Bf16ReductionsRoundEachBucketThenWiden) {
  Communicator& world = mpi_world();
  const int n = world.size();
  for (Mode mode : {Mode::kAllReduce, Mode::kReduceScatter}) {
    ParameterSet ps;
    add_params(ps);
    GradReducer red(ps, world, cpu_backend(), options(1000, mode, GetParam(), DType::kBF16));
    // The sum at flat index i after the pass, wherever this rank holds it.
    const auto result = [&](const std::function<void(int64_t, float)>& check) {
      if (mode == Mode::kAllReduce) {
        for (int64_t i = 0; i < ps.numel(); ++i) check(i, ps.flat_grads().data<float>()[i]);
        return;
      }
      for (const FlatSpan& s : red.owned()) {
        for (int64_t k = 0; k < s.numel; ++k) {
          check(s.offset + k, red.shard_grads().data<float>()[s.state_offset + k]);
        }
      }
    };
    fill_grads(ps, world.rank());
    red.arm();
    backward_announces(ps);
    red.wait();
    result([&](int64_t i, float v) { ASSERT_EQ(v, grad_sum(n, i)) << i; });
    float* g = ps.flat_grads().data<float>();
    for (int64_t i = 0; i < ps.numel(); ++i) g[i] = 1.0f + 1.0f / 1024;
    red.arm();
    backward_announces(ps);
    red.wait();
    result([&](int64_t i, float v) { ASSERT_EQ(v, float(n)) << i; });
  }
}

INSTANTIATE_TEST_SUITE_P(Issue, GradReducerIssue, ::testing::Values(Issue::kThread, Issue::kInline),
                         [](const auto& info) {
                           return info.param == Issue::kThread ? "thread" : "inline";
                         });

}  // namespace
}  // namespace peng
