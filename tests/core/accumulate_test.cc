// The device-side accumulators a training step reads once: Backend::sum_into and
// sum_squares_into on the CPU backend, against plain double loops, on awkward sizes (empty,
// one element, odd lengths, and lengths past the OpenMP threshold), accumulating across
// calls and into a view of a larger buffer (the trainer's [loss, squares] pair).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "peng/core/backend.h"
#include "peng/core/tensor.h"

namespace peng {
namespace {

const int64_t kSizes[] = {0, 1, 2, 7, 31, 1023, 4097, 16383, 16384, 65537, 300001};

// Values whose sums and squares are exact in double in any order: multiples of 1/4 in
// [-2, 2]. Any summation order then gives the double loop's value bit for bit.
Tensor dyadic(int64_t n, int seed) {
  Tensor t = Tensor::empty({n});
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = float((i * 7 + seed) % 17 - 8) * 0.25f;
  return t;
}

Tensor random_values(int64_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> dist(0.5f, 3.0f);
  Tensor t = Tensor::empty({n});
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = dist(gen);
  return t;
}

double loop_sum(const Tensor& t) {
  double s = 0;
  for (int64_t i = 0; i < t.numel(); ++i) s += double(t.data<float>()[i]);
  return s;
}

double loop_squares(const Tensor& t) {
  double s = 0;
  for (int64_t i = 0; i < t.numel(); ++i) s += double(t.data<float>()[i]) * t.data<float>()[i];
  return s;
}

TEST(Accumulate, ExactOnDyadicValuesOfAwkwardSizes) {
  Backend& be = cpu_backend();
  for (int64_t n : kSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const Tensor x = dyadic(n, int(n % 5));
    Tensor sum = Tensor::zeros({1}, DType::kF64), squares = Tensor::zeros({1}, DType::kF64);
    be.sum_into(x, sum);
    be.sum_squares_into(x, squares);
    EXPECT_EQ(sum.data<double>()[0], loop_sum(x));
    EXPECT_EQ(squares.data<double>()[0], loop_squares(x));
  }
}

TEST(Accumulate, RandomValuesMatchTheDoubleLoop) {
  Backend& be = cpu_backend();
  for (int64_t n : kSizes) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const Tensor x = random_values(n, uint64_t(n) + 11);
    Tensor sum = Tensor::zeros({1}, DType::kF64), squares = Tensor::zeros({1}, DType::kF64);
    be.sum_into(x, sum);
    be.sum_squares_into(x, squares);
    const double want_sum = loop_sum(x), want_sq = loop_squares(x);
    // Only the order of the double additions may differ (SIMD lanes, OpenMP partial sums).
    EXPECT_NEAR(sum.data<double>()[0], want_sum, 1e-12 * (std::abs(want_sum) + want_sq + 1));
    EXPECT_NEAR(squares.data<double>()[0], want_sq, 1e-12 * (want_sq + 1));
  }
}

TEST(Accumulate, AddsAcrossCallsIntoViews) {
  Backend& be = cpu_backend();
  // The trainer's pair: [0] losses, [1] squares, views of one buffer read at once.
  Tensor pair = Tensor::zeros({2}, DType::kF64);
  Tensor sum = pair.flat_view(0, {1}), squares = pair.flat_view(1, {1});
  double want_sum = 0, want_sq = 0;
  for (int64_t n : {5, 4097, 65537, 3}) {
    const Tensor x = dyadic(n, 3);
    be.sum_into(x.view({-1}), sum);
    be.sum_squares_into(x, squares);
    want_sum += loop_sum(x);
    want_sq += loop_squares(x);
  }
  // 2-D and sliced inputs count their own elements only.
  Tensor m = dyadic(30, 1).view({6, 5});
  be.sum_into(m.slice(2, 4), sum);
  want_sum += loop_sum(m.slice(2, 4));
  EXPECT_EQ(pair.data<double>()[0], want_sum);
  EXPECT_EQ(pair.data<double>()[1], want_sq);
}

TEST(Accumulate, BadAccumulatorsNameTheOp) {
  Backend& be = cpu_backend();
  const Tensor x = dyadic(8, 0);
  Tensor f32 = Tensor::zeros({1}), two = Tensor::zeros({2}, DType::kF64);
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message([&] { be.sum_into(x, f32); }).find("sum_into"), std::string::npos);
  EXPECT_NE(message([&] { be.sum_squares_into(x, two); }).find("sum_squares_into"),
            std::string::npos);
  EXPECT_NE(message([&] { be.sum_into(Tensor::zeros({3}, DType::kF64), two); }).find("sum_into"),
            std::string::npos);
}

}  // namespace
}  // namespace peng
