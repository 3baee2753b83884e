// kernels/cross_entropy.cuh under the CUDA emulation against CpuBackend's cross-entropy ops
// (whole vocabulary and vocabulary shard).
#include "tests/cuda_emu/emu.h"  // first: the kernels compile against it

#include "peng/core/cuda/kernels/cross_entropy.cuh"
#include "tests/kernels/bf16_check.h"

namespace peng {
namespace {

using namespace kernel_test;
namespace k = cuda::kernels;

struct Case {
  int64_t n, vp, vocab;
};
// One column; vocab = Vp and vocab < Vp; rows shorter than the block (7, 200) and longer
// (1000, 5003: every thread many columns); a row count not a multiple of anything.
const Case kCases[] = {{1, 1, 1}, {3, 8, 7}, {37, 200, 200}, {5, 1024, 1000}, {2, 5003, 4999}};

TEST(CrossEntropyKernel, ForwardMatchesCpu) {
  uint64_t seed = 1;
  for (const Case& t : kCases) {
    Tensor logits = padded_logits(t.n, t.vp, t.vocab, seed++);
    Tensor targets = random_targets(t.n, seed++, t.vocab);
    Tensor losses = poisoned({t.n});
    emu::Launch launch;
    k::cross_entropy_forward(launch, logits.data<const float>(), targets.data<const int32_t>(), t.n,
                             t.vp, t.vocab, losses.data<float>());
    Tensor ref = Tensor::empty({t.n});
    cpu_backend().cross_entropy_forward(logits, targets, t.vocab, ref);
    EXPECT_LE(relative_error(losses, ref), kF32) << t.n << "x" << t.vp << " vocab " << t.vocab;
  }
}

TEST(CrossEntropyKernel, BackwardMatchesCpuInPlaceAndNot) {
  uint64_t seed = 100;
  for (const Case& t : kCases) {
    Tensor logits = padded_logits(t.n, t.vp, t.vocab, seed++);
    Tensor targets = random_targets(t.n, seed++, t.vocab);
    Tensor ref = Tensor::empty({t.n, t.vp});
    cpu_backend().cross_entropy_backward(logits, targets, t.vocab, 0.37f, ref);
    Tensor dlogits = poisoned({t.n, t.vp});
    emu::Launch launch;
    k::cross_entropy_backward(launch, logits.data<const float>(), targets.data<const int32_t>(),
                              t.n, t.vp, t.vocab, 0.37f, dlogits.data<float>());
    EXPECT_LE(relative_error(dlogits, ref), kF32) << t.n << "x" << t.vp << " vocab " << t.vocab;
    // dlogits aliasing logits (the usual case), padding NaN included.
    Tensor inplace = logits.clone();
    k::cross_entropy_backward(launch, inplace.data<const float>(), targets.data<const int32_t>(),
                              t.n, t.vp, t.vocab, 0.37f, inplace.data<float>());
    EXPECT_LE(relative_error(inplace, ref), kF32) << t.n << "x" << t.vp << " vocab " << t.vocab;
  }
}

// A logit of -inf adds nothing to the softmax (a thread whose first column is -inf must not
// turn its sum into NaN), and its gradient is 0.
TEST(CrossEntropyKernel, MinusInfinityLogitsAddNothing) {
  const int64_t n = 2, vp = 300;
  Tensor logits = random({n, vp}, 3);
  for (int64_t j = 0; j < vp; j += 3) logits.data<float>()[j] = -INFINITY;  // row 0
  Tensor targets = Tensor::from_vector<int32_t>({1, 299}, {n});
  Tensor losses = poisoned({n}), dlogits = poisoned({n, vp});
  emu::Launch launch;
  k::cross_entropy_forward(launch, logits.data<const float>(), targets.data<const int32_t>(), n, vp,
                           vp, losses.data<float>());
  k::cross_entropy_backward(launch, logits.data<const float>(), targets.data<const int32_t>(), n,
                            vp, vp, 1.0f, dlogits.data<float>());
  Tensor ref = Tensor::empty({n}), dref = Tensor::empty({n, vp});
  cpu_backend().cross_entropy_forward(logits, targets, vp, ref);
  cpu_backend().cross_entropy_backward(logits, targets, vp, 1.0f, dref);
  EXPECT_LE(relative_error(losses, ref), kF32);
  EXPECT_LE(relative_error(dlogits, dref), kF32);
  EXPECT_EQ(dlogits.data<float>()[0], 0.0f);
}

// A target the host check missed gives NaN (loss and gradient row), and only in its row.
TEST(CrossEntropyKernel, TargetOutsideTheVocabularyIsNaN) {
  const int64_t n = 3, vp = 40, vocab = 33;
  Tensor logits = random({n, vp}, 4);
  Tensor targets = Tensor::from_vector<int32_t>({5, 33, -1}, {n});
  Tensor losses = poisoned({n}), dlogits = poisoned({n, vp});
  emu::Launch launch;
  k::cross_entropy_forward(launch, logits.data<const float>(), targets.data<const int32_t>(), n, vp,
                           vocab, losses.data<float>());
  k::cross_entropy_backward(launch, logits.data<const float>(), targets.data<const int32_t>(), n,
                            vp, vocab, 1.0f, dlogits.data<float>());
  EXPECT_TRUE(std::isfinite(losses.data<float>()[0]));
  EXPECT_TRUE(std::isnan(losses.data<float>()[1]));
  EXPECT_TRUE(std::isnan(losses.data<float>()[2]));
  for (int64_t j = 0; j < vp; ++j) {
    EXPECT_TRUE(std::isfinite(dlogits.data<float>()[j]));
    const bool padding = j >= vocab;
    for (int64_t row = 1; row < n; ++row) {
      const float g = dlogits.data<float>()[row * vp + j];
      EXPECT_TRUE(padding ? g == 0.0f : std::isnan(g)) << "row " << row << " column " << j;
    }
  }
}

// The vocab-parallel passes on shards [0, 300), [300, 700), [700, 1000) of 997 real columns
// (the last shard with padding), against the CPU's shard ops with the same group statistics;
// combined over the group they give the unsharded loss and gradient.
TEST(CrossEntropyKernel, ShardsMatchCpuAndCombineToTheWholeVocabulary) {
  const int64_t n = 9, vp = 1000, vocab = 997;
  Tensor logits = padded_logits(n, vp, vocab, 5);
  Tensor targets = random_targets(n, 6, vocab);
  targets.data<int32_t>()[0] = 0;
  targets.data<int32_t>()[1] = 299;
  targets.data<int32_t>()[2] = 300;
  targets.data<int32_t>()[3] = 996;
  struct Shard {
    int64_t begin, end;
    Tensor logits;
  };
  std::vector<Shard> shards;
  for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 300}, {300, 700}, {700, 1000}}) {
    Tensor s = Tensor::empty({n, e - b});
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = b; j < e; ++j)
        s.data<float>()[i * (e - b) + (j - b)] = logits.data<float>()[i * vp + j];
    }
    shards.push_back({b, e, s});
  }
  auto valid_of = [&](const Shard& s) { return std::min(s.end, vocab) - s.begin; };
  emu::Launch launch;
  Tensor group_max = Tensor::empty({n});
  for (int64_t i = 0; i < n; ++i) group_max.data<float>()[i] = -INFINITY;
  for (const Shard& s : shards) {
    Tensor mx = poisoned({n}), mx_ref = Tensor::empty({n});
    k::cross_entropy_shard_max(launch, s.logits.data<const float>(), n, s.end - s.begin,
                               valid_of(s), mx.data<float>());
    cpu_backend().cross_entropy_shard_max(s.logits, valid_of(s), mx_ref);
    EXPECT_EQ(relative_error(mx, mx_ref), 0.0) << "shard at " << s.begin;
    for (int64_t i = 0; i < n; ++i) {
      group_max.data<float>()[i] = std::max(group_max.data<float>()[i], mx.data<float>()[i]);
    }
  }
  Tensor group_stats = Tensor::zeros({n, 2});
  for (const Shard& s : shards) {
    Tensor st = poisoned({n, 2}), st_ref = Tensor::empty({n, 2});
    k::cross_entropy_shard_sums(launch, s.logits.data<const float>(), targets.data<const int32_t>(),
                                n, s.end - s.begin, s.begin, valid_of(s),
                                group_max.data<const float>(), st.data<float>());
    cpu_backend().cross_entropy_shard_sums(s.logits, targets, s.begin, valid_of(s), group_max,
                                           st_ref);
    EXPECT_LE(relative_error(st, st_ref), kF32) << "shard at " << s.begin;
    cpu_backend().add(group_stats, st, group_stats);
  }
  Tensor losses = Tensor::empty({n});
  cpu_backend().cross_entropy_forward(logits, targets, vocab, losses);
  Tensor dwhole = Tensor::empty({n, vp});
  cpu_backend().cross_entropy_backward(logits, targets, vocab, 0.5f, dwhole);
  for (int64_t i = 0; i < n; ++i) {
    const float* st = group_stats.data<float>() + 2 * i;
    const double loss = std::log(double(st[0])) + group_max.data<float>()[i] - st[1];
    EXPECT_NEAR(loss, losses.data<float>()[i], 1e-5 * std::abs(losses.data<float>()[i])) << i;
  }
  for (const Shard& s : shards) {
    const int64_t vl = s.end - s.begin;
    Tensor d = poisoned({n, vl}), d_ref = Tensor::empty({n, vl});
    k::cross_entropy_shard_backward(launch, s.logits.data<const float>(),
                                    targets.data<const int32_t>(), n, vl, s.begin, valid_of(s),
                                    group_max.data<const float>(), group_stats.data<const float>(),
                                    0.5f, d.data<float>());
    cpu_backend().cross_entropy_shard_backward(s.logits, targets, s.begin, valid_of(s), group_max,
                                               group_stats, 0.5f, d_ref);
    EXPECT_LE(relative_error(d, d_ref), kF32) << "shard at " << s.begin;
    // In place, and against the unsharded gradient's columns.
    Tensor inplace = s.logits.clone();
    k::cross_entropy_shard_backward(launch, inplace.data<const float>(),
                                    targets.data<const int32_t>(), n, vl, s.begin, valid_of(s),
                                    group_max.data<const float>(), group_stats.data<const float>(),
                                    0.5f, inplace.data<float>());
    EXPECT_LE(relative_error(inplace, d_ref), kF32) << "shard at " << s.begin;
    Tensor whole_cols = Tensor::empty({n, vl});
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < vl; ++j) {
        whole_cols.data<float>()[i * vl + j] = dwhole.data<float>()[i * vp + s.begin + j];
      }
    }
    EXPECT_LE(relative_error(d, whole_cols), kF32) << "shard at " << s.begin;
  }
}

// A shard without valid columns: max -inf, sum 0, gradient all 0.
TEST(CrossEntropyKernel, ShardWithoutValidColumns) {
  const int64_t n = 2, vl = 5;
  Tensor logits = random({n, vl}, 8);
  Tensor targets = Tensor::from_vector<int32_t>({1, 3}, {n});
  Tensor mx = poisoned({n}), st = poisoned({n, 2}), d = poisoned({n, vl});
  emu::Launch launch;
  k::cross_entropy_shard_max(launch, logits.data<const float>(), n, vl, 0, mx.data<float>());
  EXPECT_EQ(mx.data<float>()[0], -INFINITY);
  Tensor group_max = Tensor::from_vector<float>({0.5f, -0.25f}, {n});
  k::cross_entropy_shard_sums(launch, logits.data<const float>(), targets.data<const int32_t>(), n,
                              vl, 0, 0, group_max.data<const float>(), st.data<float>());
  for (int64_t i = 0; i < 2 * n; ++i) EXPECT_EQ(st.data<float>()[i], 0.0f);
  Tensor group_stats = Tensor::from_vector<float>({2.0f, 0.0f, 3.0f, 0.0f}, {n, 2});
  k::cross_entropy_shard_backward(launch, logits.data<const float>(), targets.data<const int32_t>(),
                                  n, vl, 0, 0, group_max.data<const float>(),
                                  group_stats.data<const float>(), 1.0f, d.data<float>());
  for (int64_t i = 0; i < n * vl; ++i) EXPECT_EQ(d.data<float>()[i], 0.0f);
}

TEST(CrossEntropyKernel, IsDeterministic) {
  const int64_t n = 4, vp = 3001;
  Tensor logits = random({n, vp}, 9, -8, 8);
  Tensor targets = random_targets(n, 10, vp);
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Tensor losses = Tensor::empty({n}), d = Tensor::empty({n, vp});
    emu::Launch launch;
    k::cross_entropy_forward(launch, logits.data<const float>(), targets.data<const int32_t>(), n,
                             vp, vp, losses.data<float>());
    k::cross_entropy_backward(launch, logits.data<const float>(), targets.data<const int32_t>(), n,
                              vp, vp, 1.0f, d.data<float>());
    std::vector<float> got(losses.data<float>(), losses.data<float>() + n);
    got.insert(got.end(), d.data<float>(), d.data<float>() + d.numel());
    if (run == 0)
      first = got;
    else
      EXPECT_EQ(got, first);
  }
}

// bf16 logits (the reference sees the same rounded values): f32 statistics keep the loss
// within f32 accuracy; the bf16 gradient within bf16 rounding.
TEST(CrossEntropyKernel, Bf16WithinBounds) {
  const int64_t n = 6, vp = 777, vocab = 770;
  Tensor logits = padded_logits(n, vp, vocab, 11);
  std::vector<__nv_bfloat16> lb = to_bf16(logits);
  logits = from_bf16(lb, logits.shape());
  Tensor targets = random_targets(n, 12, vocab);
  Tensor losses = poisoned({n});
  emu::Launch launch;
  k::cross_entropy_forward(launch, lb.data(), targets.data<const int32_t>(), n, vp, vocab,
                           losses.data<float>());
  Tensor ref = Tensor::empty({n});
  cpu_backend().cross_entropy_forward(logits, targets, vocab, ref);
  EXPECT_LE(relative_error(losses, ref), kF32);
  std::vector<__nv_bfloat16> db(size_t(n * vp), __float2bfloat16(NAN));
  k::cross_entropy_backward(launch, lb.data(), targets.data<const int32_t>(), n, vp, vocab, 1.0f,
                            db.data());
  Tensor d = from_bf16(db, {n, vp}), dref = Tensor::empty({n, vp});
  cpu_backend().cross_entropy_backward(logits, targets, vocab, 1.0f, dref);
  EXPECT_LE(relative_error(d, dref), 1e-2);
}

}  // namespace
}  // namespace peng
