// Fused softmax + cross-entropy over the first `vocab` of Vp (padded) columns; and the
// same on a vocabulary shard (Megatron's vocab-parallel cross-entropy, at the end): per row
// the shard max, then sum exp(l - max) with the group's max (double accumulation) and the
// target's logit when it is in the shard, the caller reducing over the group between the
// passes; backward recomputes exp(l - max) / sum per column.
//
// Layout: logits / dlogits (N, Vp) row-major (leading dimensions flattened), targets (N) i32,
// losses (N). Rows are spread over OpenMP threads; columns >= vocab are never read (they may
// hold garbage, NaN included) and get a zero gradient.
// Forward per row: mx = max_j<V l_j, sum = sum_j<V exp(l_j - mx) (16-lane SIMD partial sums,
// cpu::fast_exp), loss = log(sum) + mx - l_target (the log in double).
// Backward recomputes the softmax (nothing is saved between the passes): the max, then
// e_j = exp(l_j - mx) written to dlogits_j while summing (one exp per column; the 16 KB row
// stays in L1), then dlogits_j = dloss * (e_j / sum - [j == target]). Each pass reads l_j
// before writing dlogits_j at the same index, so dlogits may alias logits.
#include <algorithm>
#include <cmath>
#include <limits>

#include "peng/core/cpu/cpu_backend.h"

namespace peng {
namespace {

struct CeDims {
  int64_t n, vp;
};

CeDims ce_dims(const char* op, const Tensor& logits, const Tensor& targets, int64_t vocab) {
  cpu::check_tensor(op, "logits", logits);
  cpu::check_tensor(op, "targets", targets, DType::kI32);
  PENG_CHECK(logits.ndim() >= 1, op, ": logits must be (N, Vp), got ", logits.str());
  CeDims d{cpu::rows_of(logits), logits.dim(-1)};
  PENG_CHECK(vocab > 0 && vocab <= d.vp, op, ": vocab ", vocab, " must be in [1, Vp = ", d.vp,
             "] for logits ", logits.str());
  PENG_CHECK(targets.numel() == d.n, op, ": targets ", targets.str(),
             " must hold one id per row of logits ", logits.str());
  const int32_t* t = targets.data<const int32_t>();
  for (int64_t i = 0; i < d.n; ++i) {
    PENG_CHECK(t[i] >= 0 && t[i] < vocab, op, ": target ", t[i], " at row ", i,
               " is outside [0, vocab = ", vocab, ")");
  }
  return d;
}

// Max and sum of exp(l - max) over the first v entries of a row.
inline void row_softmax_stats(const float* l, int64_t v, float& mx, float& sum) {
  const float m = cpu::row_max(l, v);
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < v; ++j) s += cpu::fast_exp(l[j] - m);
  mx = m;
  sum = s;
}

}  // namespace

void CpuBackend::cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                                       Tensor& losses) {
  const char* op = "cross_entropy_forward";
  const CeDims d = ce_dims(op, logits, targets, vocab);
  cpu::check_tensor(op, "losses", losses);
  PENG_CHECK(losses.numel() == d.n, op, ": losses ", losses.str(),
             " must hold one value per row of logits ", logits.str());
  const float* pl = logits.data<const float>();
  const int32_t* pt = targets.data<const int32_t>();
  float* ploss = losses.data<float>();
#pragma omp parallel for schedule(static) if (d.n * vocab >= cpu::kParallelMin)
  for (int64_t i = 0; i < d.n; ++i) {
    const float* l = pl + i * d.vp;  // (Vp), first vocab used
    float mx, sum;
    row_softmax_stats(l, vocab, mx, sum);
    ploss[i] = float(std::log(double(sum)) + double(mx) - double(l[pt[i]]));
  }
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                                        float dloss, Tensor& dlogits) {
  const char* op = "cross_entropy_backward";
  const CeDims d = ce_dims(op, logits, targets, vocab);
  cpu::check_shape(op, "dlogits", dlogits, logits.shape());
  const float* pl = logits.data<const float>();  // may alias dlogits
  const int32_t* pt = targets.data<const int32_t>();
  float* pd = dlogits.data<float>();
#pragma omp parallel for schedule(static) if (d.n * vocab >= cpu::kParallelMin)
  for (int64_t i = 0; i < d.n; ++i) {
    const float* l = pl + i * d.vp;  // (Vp)
    float* g = pd + i * d.vp;        // (Vp)
    const float mx = cpu::row_max(l, vocab);
    // One exp per column: g = exp(l - mx) and its sum in one pass (the row stays in L1),
    // then the scale by dloss / sum.
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < vocab; ++j) {
      const float e = cpu::fast_exp(l[j] - mx);
      g[j] = e;
      sum += e;
    }
    const float k = dloss / sum;
#pragma omp simd
    for (int64_t j = 0; j < vocab; ++j) g[j] *= k;
    g[pt[i]] -= dloss;
    std::fill(g + vocab, g + d.vp, 0.0f);
  }
}

namespace {
struct ShardDims {
  int64_t n, vl;
};
ShardDims shard_dims(const char* op, const Tensor& logits, int64_t valid) {
  cpu::check_tensor(op, "logits", logits);
  PENG_CHECK(logits.ndim() >= 1, op, ": logits must be (N, Vl), got ", logits.str());
  ShardDims d{cpu::rows_of(logits), logits.dim(-1)};
  PENG_CHECK(valid >= 0 && valid <= d.vl, op, ": valid ", valid, " outside [0, ", d.vl, "]");
  return d;
}
// ... and the per-row inputs of the sums and backward passes.
ShardDims shard_dims(const char* op, const Tensor& logits, int64_t valid, const Tensor& targets,
                     const Tensor& row_max, const Tensor& stats) {
  const ShardDims d = shard_dims(op, logits, valid);
  cpu::check_tensor(op, "targets", targets, DType::kI32);
  PENG_CHECK(targets.numel() == d.n, op, ": targets ", targets.str(), " for ", d.n, " rows");
  cpu::check_shape(op, "row_max", row_max, {d.n});
  cpu::check_shape(op, "stats", stats, {d.n, 2});
  return d;
}
}  // namespace

void CpuBackend::cross_entropy_shard_max(const Tensor& logits, int64_t valid, Tensor& row_max) {
  const char* op = "cross_entropy_shard_max";
  const ShardDims d = shard_dims(op, logits, valid);
  cpu::check_shape(op, "row_max", row_max, {d.n});
  const float* l = logits.data<const float>();
  float* mx = row_max.data<float>();
#pragma omp parallel for schedule(static) if (d.n * valid >= cpu::kParallelMin)
  for (int64_t i = 0; i < d.n; ++i) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < valid; ++j) m = std::max(m, l[i * d.vl + j]);
    mx[i] = m;
  }
}

void CpuBackend::cross_entropy_shard_sums(const Tensor& logits, const Tensor& targets,
                                          int64_t vocab_begin, int64_t valid, const Tensor& row_max,
                                          Tensor& stats) {
  const char* op = "cross_entropy_shard_sums";
  const ShardDims d = shard_dims(op, logits, valid, targets, row_max, stats);
  const float* l = logits.data<const float>();
  const int32_t* t = targets.data<const int32_t>();
  const float* mx = row_max.data<const float>();
  float* st = stats.data<float>();
#pragma omp parallel for schedule(static) if (d.n * valid >= cpu::kParallelMin)
  for (int64_t i = 0; i < d.n; ++i) {
    const float* row = l + i * d.vl;
    double sum = 0;
    for (int64_t j = 0; j < valid; ++j) sum += std::exp(double(row[j]) - double(mx[i]));
    const int64_t col = int64_t(t[i]) - vocab_begin;
    st[2 * i] = float(sum);
    st[2 * i + 1] = col >= 0 && col < valid ? row[col] : 0.0f;
  }
}

void CpuBackend::cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets,
                                              int64_t vocab_begin, int64_t valid,
                                              const Tensor& row_max, const Tensor& stats,
                                              float dloss, Tensor& dlogits) {
  const char* op = "cross_entropy_shard_backward";
  const ShardDims d = shard_dims(op, logits, valid, targets, row_max, stats);
  cpu::check_shape(op, "dlogits", dlogits, logits.shape());
  const float* l = logits.data<const float>();
  const int32_t* t = targets.data<const int32_t>();
  const float* mx = row_max.data<const float>();
  const float* st = stats.data<const float>();
  float* dl = dlogits.data<float>();
#pragma omp parallel for schedule(static) if (d.n * d.vl >= cpu::kParallelMin)
  for (int64_t i = 0; i < d.n; ++i) {
    const int64_t col = int64_t(t[i]) - vocab_begin;
    const float inv = 1.0f / st[2 * i];
    for (int64_t j = 0; j < d.vl; ++j) {
      const int64_t k = i * d.vl + j;
      dl[k] = j < valid ? dloss * (std::exp(l[k] - mx[i]) * inv - (j == col ? 1.0f : 0.0f)) : 0.0f;
    }
  }
}

}  // namespace peng
