// Helpers of the kernel tests (tests/kernels) and of the GPU op tests (tests/gpu, through
// gpu_op_check.h): random inputs, poisoned outputs, and the comparison of a kernel's result
// with the CPU backend's. Plain C++: the GPU tests build without the CUDA headers (bf16
// helpers: bf16_check.h).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "peng/core/backend.h"
#include "peng/core/tensor.h"

namespace peng::kernel_test {

// A CPU tensor of uniform values in [lo, hi), fresh for every seed.
inline Tensor random(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

// i32 class targets (n) uniform in [0, vocab).
inline Tensor random_targets(int64_t n, uint64_t seed, int64_t vocab) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> u(0, int32_t(vocab - 1));
  Tensor t = Tensor::empty({n}, DType::kI32);
  for (int64_t i = 0; i < n; ++i) t.data<int32_t>()[i] = u(rng);
  return t;
}

// Logits (n, vp) uniform in [lo, hi) in the `vocab` real columns, NaN in the padding columns
// (they must never be read).
inline Tensor padded_logits(int64_t n, int64_t vp, int64_t vocab, uint64_t seed, float lo = -4,
                            float hi = 4) {
  Tensor l = random({n, vp}, seed, lo, hi);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = vocab; j < vp; ++j) l.data<float>()[i * vp + j] = NAN;
  }
  return l;
}

// i32 token ids (B, T) uniform in [lo, hi) (ids repeat: rows of dwte collide).
inline Tensor random_tokens(int64_t B, int64_t T, uint64_t seed, int32_t lo, int32_t hi) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> u(lo, hi - 1);
  Tensor t = Tensor::empty({B, T}, DType::kI32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = u(rng);
  return t;
}

// f32 values (n) on a grid of 2^-10 in [-8, 8): their squares and every partial sum are exact
// in double (multiples of 2^-20 below 2^33), so any summation order gives the exact total.
inline Tensor dyadic(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> u(-8 * 1024, 8 * 1024 - 1);
  Tensor t = Tensor::empty({n});
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = float(u(rng)) / 1024.0f;
  return t;
}

// A RoPE case: qkv (b, t, heads * hd), the first n_rot heads rotated, tables of tmax rows.
struct RopeCase {
  int64_t b, t, tmax;
  int heads, n_rot, hd;
};

// cos, sin (tmax, hd/2) of the angles t * 10000^(-2i/hd), as a model builds them.
inline void rope_tables(int64_t tmax, int hd, Tensor& cos, Tensor& sin) {
  const int64_t half = hd / 2;
  cos = Tensor::empty({tmax, half});
  sin = Tensor::empty({tmax, half});
  for (int64_t t = 0; t < tmax; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double a = double(t) * std::pow(10000.0, -2.0 * double(i) / double(hd));
      cos.data<float>()[t * half + i] = float(std::cos(a));
      sin.data<float>()[t * half + i] = float(std::sin(a));
    }
  }
}

// att with its strict upper triangle set to `v` (the CPU leaves it unspecified; the CUDA
// kernels write zeros).
inline Tensor with_upper(const Tensor& att, float v) {
  Tensor out = att.clone();
  const int64_t T = att.dim(-1), rows = att.numel() / T;
  float* p = out.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = r % T + 1; j < T; ++j) p[r * T + j] = v;
  }
  return out;
}

// A tensor of NaNs: an element the kernel does not write fails the comparison.
inline Tensor poisoned(const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  std::fill(t.data<float>(), t.data<float>() + t.numel(), std::numeric_limits<float>::quiet_NaN());
  return t;
}

// ||got - want|| / ||want|| (||got|| when want is all zero); infinity if got holds a NaN or
// an infinity where want does not.
inline double relative_error(const Tensor& got, const Tensor& want) {
  EXPECT_EQ(got.shape(), want.shape());
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double g = got.data<float>()[i], w = want.data<float>()[i];
    if (!std::isfinite(g) && !(std::isnan(g) == std::isnan(w) && g == w)) {
      return std::numeric_limits<double>::infinity();
    }
    if (std::isfinite(g)) {
      diff += (g - w) * (g - w);
      norm += w * w;
    }
  }
  if (norm == 0.0) return std::sqrt(diff);
  return std::sqrt(diff / norm);
}

// Same shape and the same f32 bits (NaNs included).
inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * dtype_size(a.dtype())) == 0;
}

// AdamW's bound: the update's last operation on each element is want = a + b (p: p*decay -
// step_size*m/(..), m: m + w1*(g - m), v: v*b2 + w2*g*g), where compilers may fuse a
// multiply-add: fused and unfused differ by at most half an ulp of each product plus one
// rounding of the result, 1.5 * 2^-23 (|a| + |b|). Returns the largest
// |got - want| / (2^-23 (|a| + |b|)) (infinity if got holds a NaN or an infinity);
// terms(i) gives {a, b} of element i.
template <class Terms>
double ulps_of_operands(const Tensor& got, const Tensor& want, Terms terms) {
  double worst = 0.0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double g = got.data<float>()[i], w = want.data<float>()[i];
    if (!std::isfinite(g)) return std::numeric_limits<double>::infinity();
    const auto [a, b] = terms(i);
    const double scale = 0x1p-23 * (std::abs(a) + std::abs(b));
    if (g != w) worst = std::max(worst, std::abs(g - w) / scale);
  }
  return worst;
}

// The fp32 bound of the issue: 1e-5 relative (1e-4 for reductions over long rows).
constexpr double kF32 = 1e-5;
constexpr double kF32LongReduction = 1e-4;

}  // namespace peng::kernel_test
