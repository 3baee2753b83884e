// Helpers of the kernel tests (tests/kernels): random inputs, poisoned outputs, and the
// comparison of a kernel's result with the CPU backend's.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "core/backend.h"
#include "core/tensor.h"

namespace peng::kernel_test {

// A CPU tensor of uniform values in [lo, hi), fresh for every seed.
inline Tensor random(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
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

// The fp32 bound of the issue: 1e-5 relative (1e-4 for reductions over long rows).
constexpr double kF32 = 1e-5;
constexpr double kF32LongReduction = 1e-4;

}  // namespace peng::kernel_test
