// kernels/reduce.cuh under the CUDA emulation: the double-precision sums (sum of squares,
// sum) against a double loop and CpuBackend's sum_squares / sum_squares_into / sum_into.
#include "tests/cuda_emu/emu.h"  // first: the kernels compile against it

#include "peng/core/cuda/kernels/reduce.cuh"
#include "tests/kernels/kernel_check.h"

namespace peng {
namespace {

using namespace kernel_test;
namespace k = cuda::kernels;

// Empty, one element, a partial block, and more than kReduceBlocks * 256 elements (threads
// take several elements; 1000003 is prime).
const int64_t kSizes[] = {0, 1, 257, 1000003};

// The sum of x's elements (or of their squares) in double, in order. On dyadic data
// (kernel_check.h) every order gives this exact total, so the kernels must equal it to the bit.
double double_loop(const Tensor& x, bool square) {
  double s = 0.0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double v = x.data<float>()[i];
    s += square ? v * v : v;
  }
  return s;
}

TEST(ReduceKernel, ExactOnExactlyRepresentableSums) {
  uint64_t seed = 1;
  for (const int64_t n : kSizes) {
    Tensor x = dyadic(n, seed++);
    emu::Launch launch;
    double sq = std::nan(""), acc_sq = 0.75, acc_sum = -2.5;
    k::sum_squares(launch, x.data<const float>(), n, &sq);  // overwrites (NaN start)
    k::sum_squares_into(launch, x.data<const float>(), n, &acc_sq);
    k::sum_into(launch, x.data<const float>(), n, &acc_sum);
    EXPECT_EQ(sq, double_loop(x, true)) << n;
    EXPECT_EQ(acc_sq, 0.75 + double_loop(x, true)) << n;
    EXPECT_EQ(acc_sum, -2.5 + double_loop(x, false)) << n;
  }
}

// The exact sum of x[i]^2 (square) or x[i], near enough: compensated (Kahan) summation in
// long double. Also returns the sum of the terms' magnitudes.
std::pair<double, double> accurate_sum(const Tensor& x, bool square) {
  long double s = 0, c = 0, mag = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const long double v = x.data<float>()[i];
    const long double term = square ? v * v : v;
    const long double y = term - c, t = s + y;
    c = (t - s) - y;
    s = t;
    mag += term < 0 ? -term : term;
  }
  return {double(s), double(mag)};
}

// Arbitrary floats against the accurate sum. The kernels' summation is a tree of fixed depth:
// each thread adds at most ceil(n / (256 G)) elements, then two warp trees (5 levels each),
// then pass 2 (at most 4 partials per thread, two more warp trees). So the error is at most
// depth * 2^-53 * sum |terms| with depth <= ceil(n / (256 G)) + 24 (plus the final rounding
// to double, half an ulp of the result).
TEST(ReduceKernel, WithinTheTreeBoundOfTheExactSum) {
  uint64_t seed = 10;
  for (const int64_t n : kSizes) {
    Tensor x = random({n}, seed++, -3, 2);
    const int64_t blocks = k::reduce_blocks(n);
    const double depth = double(blocks ? (n + 256 * blocks - 1) / (256 * blocks) : 0) + 24.0 + 1.0;
    emu::Launch launch;
    double sq = 0.0, sum = 0.0;
    k::sum_squares_into(launch, x.data<const float>(), n, &sq);
    k::sum_into(launch, x.data<const float>(), n, &sum);
    const auto [want_sq, mag_sq] = accurate_sum(x, true);
    const auto [want_sum, mag_sum] = accurate_sum(x, false);
    EXPECT_LE(std::abs(sq - want_sq), depth * 0x1p-53 * mag_sq) << n;
    EXPECT_LE(std::abs(sum - want_sum), depth * 0x1p-53 * mag_sum) << n;
    // The CPU backend's sums (another order, each within its own bound of the exact sum).
    const double cpu_bound = double(n) * 0x1p-53;
    EXPECT_LE(std::abs(sq - cpu_backend().sum_squares(x)), (depth * 0x1p-53 + cpu_bound) * mag_sq)
        << n;
    Tensor acc = Tensor::zeros({1}, DType::kF64);
    cpu_backend().sum_into(x, acc);
    EXPECT_LE(std::abs(sum - acc.data<double>()[0]), (depth * 0x1p-53 + cpu_bound) * mag_sum) << n;
  }
}

TEST(ReduceKernel, IsDeterministicAndAccumulatesAcrossCalls) {
  const int64_t n = 300007;
  Tensor x = random({n}, 20), y = random({n / 3}, 21);
  std::vector<double> first;
  for (int run = 0; run < 2; ++run) {
    emu::Launch launch;
    double acc = 0.0, once_x = 0.0, once_y = 0.0;
    k::sum_squares_into(launch, x.data<const float>(), n, &acc);
    k::sum_squares_into(launch, y.data<const float>(), n / 3, &acc);
    k::sum_squares(launch, x.data<const float>(), n, &once_x);
    k::sum_squares(launch, y.data<const float>(), n / 3, &once_y);
    EXPECT_EQ(acc, once_x + once_y);  // += of the same per-tensor totals
    std::vector<double> got = {acc, once_x, once_y};
    if (run == 0)
      first = got;
    else
      EXPECT_EQ(got, first);
  }
}

}  // namespace
}  // namespace peng
