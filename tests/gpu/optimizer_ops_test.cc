// CudaBackend's adamw_update and double-precision sums (sum_squares, sum_squares_into,
// sum_into) against the CPU backend and accurate sums (label gpu; skips without a GPU).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "tests/gpu/gpu_op_check.h"

namespace peng {
namespace {

using namespace gpu_test;

// Three steps, each from the CPU's state of the step before, on GPT-2 124M's largest tensor
// (wte, 50304 x 768) and odd sizes.
TEST(CudaOptimizerOps, AdamWMatchesCpu) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 1;
  for (const int64_t n : {int64_t(1), int64_t(1000), int64_t(50304) * 768}) {
    Tensor p_ref = random({n}, seed++), m_ref = random({n}, seed++, -0.1f, 0.1f),
           v_ref = random({n}, seed++, 0.0f, 0.01f);
    for (int64_t step = 1; step <= 3; ++step) {
      Tensor g = random({n}, seed++, -0.5f, 0.5f);
      AdamWOptions opt;
      opt.lr = 6e-4f;
      opt.weight_decay = step == 1 ? 0.0f : 0.1f;
      opt.step = step;
      Tensor p = on_gpu(p_ref), m = on_gpu(m_ref), v = on_gpu(v_ref);
      const Tensor p0 = p_ref.clone(), m0 = m_ref.clone(), v0 = v_ref.clone();
      gpu().adamw_update(p, on_gpu(g), m, v, opt);
      cpu_backend().adamw_update(p_ref, g, m_ref, v_ref, opt);
      // The backends' f32 scalars (core/backend.h), for the bound's operands.
      const AdamWScalars s = adamw_scalars(opt);
      auto at = [](const Tensor& t, int64_t i) { return double(t.data<float>()[i]); };
      Tensor p_got = on_cpu(p), m_got = on_cpu(m), v_got = on_cpu(v);
      EXPECT_LE(ulps_of_operands(p_got, p_ref,
                                 [&](int64_t i) {
                                   const double upd =
                                       s.step_size * at(m_ref, i) /
                                       (std::sqrt(at(v_ref, i)) / s.bc2_sqrt + s.eps);
                                   return std::pair<double, double>{at(p0, i) * s.decay, upd};
                                 }),
                1.5)
          << "n " << n << " step " << step;
      EXPECT_LE(ulps_of_operands(
                    m_got, m_ref,
                    [&](int64_t i) {
                      return std::pair<double, double>{at(m0, i), s.w1 * (at(g, i) - at(m0, i))};
                    }),
                1.5)
          << "n " << n << " step " << step;
      EXPECT_LE(
          ulps_of_operands(
              v_got, v_ref,
              [&](int64_t i) {
                return std::pair<double, double>{at(v0, i) * s.b2, s.w2 * at(g, i) * at(g, i)};
              }),
          1.5)
          << "n " << n << " step " << step;
      EXPECT_LE(relative_error(p_got, p_ref), 1e-7) << "n " << n << " step " << step;
    }
  }
}

TEST(CudaOptimizerOps, SumsAreExactOnExactlyRepresentableData) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 10;
  for (const int64_t n : {int64_t(0), int64_t(1), int64_t(1000003), int64_t(50304) * 768}) {
    Tensor x = dyadic(n, seed++);
    double want_sq = 0.0, want_sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double v = x.data<float>()[i];
      want_sq += v * v;
      want_sum += v;
    }
    Tensor xg = on_gpu(x);
    EXPECT_EQ(gpu().sum_squares(xg), want_sq) << n;
    Tensor acc = on_gpu(Tensor::from_vector<double>({0.75}, {1}));
    gpu().sum_squares_into(xg, acc);
    gpu().sum_squares_into(xg, acc);
    EXPECT_EQ(on_cpu(acc).data<double>()[0], 0.75 + want_sq + want_sq) << n;
    Tensor acc_sum = on_gpu(Tensor::from_vector<double>({-2.5}, {1}));
    gpu().sum_into(xg, acc_sum);
    EXPECT_EQ(on_cpu(acc_sum).data<double>()[0], -2.5 + want_sum) << n;
  }
}

// Arbitrary floats: within the fixed tree's error bound of a compensated long-double sum
// (kernels/reduce.cuh: depth <= ceil(n / (256 * 1024)) + 25 roundings), and the same bits on
// every run.
TEST(CudaOptimizerOps, SumsWithinTheirBoundAndDeterministic) {
  PENG_REQUIRE_GPU();
  const int64_t n = int64_t(50304) * 768 + 7;
  Tensor x = random({n}, 20, -3, 2);
  long double s = 0, c = 0, mag = 0;
  for (int64_t i = 0; i < n; ++i) {
    const long double v = x.data<float>()[i], term = v * v;
    const long double y = term - c, t = s + y;
    c = (t - s) - y;
    s = t;
    mag += term;
  }
  const double depth = double((n + 256 * 1024 - 1) / (256 * 1024)) + 25.0;
  Tensor xg = on_gpu(x);
  const double first = gpu().sum_squares(xg);
  EXPECT_LE(std::abs(first - double(s)), depth * 0x1p-53 * double(mag));
  EXPECT_NEAR(first, cpu_backend().sum_squares(x), (depth + double(n)) * 0x1p-53 * double(mag));
  for (int run = 0; run < 3; ++run) {
    const double again = gpu().sum_squares(xg);
    EXPECT_EQ(std::memcmp(&again, &first, sizeof again), 0);
  }
}

TEST(CudaOptimizerOps, BadArgumentsAreClearErrors) {
  PENG_REQUIRE_GPU();
  Tensor x = Tensor::zeros({4}, DType::kF32, Device::cuda(0));
  Tensor acc_f32 = Tensor::zeros({1}, DType::kF32, Device::cuda(0));
  Tensor acc_two = Tensor::zeros({2}, DType::kF64, Device::cuda(0));
  Tensor acc_host = Tensor::zeros({1}, DType::kF64);
  EXPECT_THROW(gpu().sum_squares_into(x, acc_f32), Error);
  EXPECT_THROW(gpu().sum_squares_into(x, acc_two), Error);
  EXPECT_THROW(gpu().sum_into(x, acc_host), Error);
  Tensor p = Tensor::zeros({4}, DType::kF32, Device::cuda(0));
  Tensor short_v = Tensor::zeros({3}, DType::kF32, Device::cuda(0));
  Tensor m = Tensor::zeros({4}, DType::kF32, Device::cuda(0));
  EXPECT_THROW(gpu().adamw_update(p, x, m, short_v, AdamWOptions{}), Error);
  EXPECT_THROW(gpu().adamw_update(p, p, m, x, AdamWOptions{}), Error);  // param aliases grad
}

}  // namespace
}  // namespace peng
