// CudaBackend's cross-entropy ops (whole vocabulary and vocabulary shard) against the CPU
// backend (label gpu; skips without a GPU).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "tests/gpu/gpu_op_check.h"

namespace peng {
namespace {

using namespace gpu_test;

struct Case {
  int64_t n, vp, vocab;
};
// GPT-2's padded vocabulary over 4 x 1024 rows, and small awkward ones.
const Case kCases[] = {{1, 1, 1}, {3, 8, 7}, {37, 1000, 997}, {4096, 50304, 50257}};

TEST(CudaCrossEntropyOps, ForwardBackwardMatchCpu) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 1;
  for (const Case& t : kCases) {
    Tensor logits = padded_logits(t.n, t.vp, t.vocab, seed++, -6, 6);
    Tensor targets = random_targets(t.n, seed++, t.vocab);
    Tensor logits_gpu = on_gpu(logits), targets_gpu = on_gpu(targets);
    const double tol = t.vocab > 1024 ? kF32LongReduction : kF32;
    Tensor losses = on_gpu(poisoned({t.n}));
    gpu().cross_entropy_forward(logits_gpu, targets_gpu, t.vocab, losses);
    Tensor ref = Tensor::empty({t.n});
    cpu_backend().cross_entropy_forward(logits, targets, t.vocab, ref);
    EXPECT_LE(relative_error(on_cpu(losses), ref), tol) << t.n << "x" << t.vp;

    Tensor dref = Tensor::empty({t.n, t.vp});
    cpu_backend().cross_entropy_backward(logits, targets, t.vocab, 1.0f / float(t.n), dref);
    Tensor dlogits = on_gpu(poisoned({t.n, t.vp}));
    gpu().cross_entropy_backward(logits_gpu, targets_gpu, t.vocab, 1.0f / float(t.n), dlogits);
    EXPECT_LE(relative_error(on_cpu(dlogits), dref), kF32) << t.n << "x" << t.vp;
    // In place: dlogits aliasing logits (the usual case).
    gpu().cross_entropy_backward(logits_gpu, targets_gpu, t.vocab, 1.0f / float(t.n), logits_gpu);
    EXPECT_LE(relative_error(on_cpu(logits_gpu), dref), kF32) << t.n << "x" << t.vp << " in place";
  }
}

// GPT-2's vocabulary in two shards of 25152 columns (the second with padding); the group's
// statistics combined on the host between the passes, as the tensor-parallel caller does.
TEST(CudaCrossEntropyOps, ShardsMatchCpu) {
  PENG_REQUIRE_GPU();
  const int64_t n = 1024, vp = 50304, vocab = 50257, half = vp / 2;
  Tensor logits = padded_logits(n, vp, vocab, 7, -6, 6);
  Tensor targets = random_targets(n, 8, vocab);
  Tensor targets_gpu = on_gpu(targets);
  std::vector<Tensor> shards;
  for (int64_t begin : {int64_t(0), half}) {
    Tensor s = Tensor::empty({n, half});
    for (int64_t i = 0; i < n; ++i) {
      std::copy(logits.data<float>() + i * vp + begin, logits.data<float>() + i * vp + begin + half,
                s.data<float>() + i * half);
    }
    shards.push_back(s);
  }
  auto valid_of = [&](int k) { return std::min(vocab - k * half, half); };
  Tensor group_max = Tensor::empty({n});
  std::fill(group_max.data<float>(), group_max.data<float>() + n, -INFINITY);
  for (int k = 0; k < 2; ++k) {
    Tensor mx = on_gpu(poisoned({n})), mx_ref = Tensor::empty({n});
    gpu().cross_entropy_shard_max(on_gpu(shards[size_t(k)]), valid_of(k), mx);
    cpu_backend().cross_entropy_shard_max(shards[size_t(k)], valid_of(k), mx_ref);
    EXPECT_EQ(relative_error(on_cpu(mx), mx_ref), 0.0) << "shard " << k;
    for (int64_t i = 0; i < n; ++i) {
      group_max.data<float>()[i] = std::max(group_max.data<float>()[i], mx_ref.data<float>()[i]);
    }
  }
  Tensor group_stats = Tensor::zeros({n, 2});
  for (int k = 0; k < 2; ++k) {
    Tensor st = on_gpu(poisoned({n, 2})), st_ref = Tensor::empty({n, 2});
    gpu().cross_entropy_shard_sums(on_gpu(shards[size_t(k)]), targets_gpu, k * half, valid_of(k),
                                   on_gpu(group_max), st);
    cpu_backend().cross_entropy_shard_sums(shards[size_t(k)], targets, k * half, valid_of(k),
                                           group_max, st_ref);
    EXPECT_LE(relative_error(on_cpu(st), st_ref), kF32) << "shard " << k;
    cpu_backend().add(group_stats, st_ref, group_stats);
  }
  for (int k = 0; k < 2; ++k) {
    Tensor d = on_gpu(poisoned({n, half})), d_ref = Tensor::empty({n, half});
    gpu().cross_entropy_shard_backward(on_gpu(shards[size_t(k)]), targets_gpu, k * half,
                                       valid_of(k), on_gpu(group_max), on_gpu(group_stats), 0.25f,
                                       d);
    cpu_backend().cross_entropy_shard_backward(shards[size_t(k)], targets, k * half, valid_of(k),
                                               group_max, group_stats, 0.25f, d_ref);
    EXPECT_LE(relative_error(on_cpu(d), d_ref), kF32) << "shard " << k;
  }
}

TEST(CudaCrossEntropyOps, IsDeterministic) {
  PENG_REQUIRE_GPU();
  const int64_t n = 4096, vp = 50304, vocab = 50257;
  Tensor logits = on_gpu(padded_logits(n, vp, vocab, 9, -6, 6));
  Tensor targets = on_gpu(random_targets(n, 10, vocab));
  Tensor first_losses, first_d;
  for (int run = 0; run < 2; ++run) {
    Tensor losses = Tensor::empty({n}, DType::kF32, Device::cuda(0));
    Tensor d = Tensor::empty({n, vp}, DType::kF32, Device::cuda(0));
    gpu().cross_entropy_forward(logits, targets, vocab, losses);
    gpu().cross_entropy_backward(logits, targets, vocab, 1.0f, d);
    Tensor l = on_cpu(losses), g = on_cpu(d);
    if (run == 0) {
      first_losses = l;
      first_d = g;
    } else {
      EXPECT_EQ(std::memcmp(l.raw_data(), first_losses.raw_data(), l.nbytes()), 0);
      EXPECT_EQ(std::memcmp(g.raw_data(), first_d.raw_data(), g.nbytes()), 0);
    }
  }
}

TEST(CudaCrossEntropyOps, BadArgumentsAreClearErrors) {
  PENG_REQUIRE_GPU();
  Tensor logits = Tensor::zeros({2, 8}, DType::kF32, Device::cuda(0));
  Tensor targets = Tensor::zeros({2}, DType::kI32, Device::cuda(0));
  Tensor losses = Tensor::empty({2}, DType::kF32, Device::cuda(0));
  EXPECT_THROW(gpu().cross_entropy_forward(logits, targets, 9, losses), Error);  // vocab > Vp
  Tensor host_targets = Tensor::zeros({2}, DType::kI32);
  EXPECT_THROW(gpu().cross_entropy_forward(logits, host_targets, 8, losses), Error);
  Tensor short_losses = Tensor::empty({1}, DType::kF32, Device::cuda(0));
  EXPECT_THROW(gpu().cross_entropy_forward(logits, targets, 8, short_losses), Error);
}

}  // namespace
}  // namespace peng
