// kernels/matmul.cuh (the bias gradient and the k = 0 fill of the cuBLASLt ops) under the CUDA
// emulation against CpuBackend's linear_backward and matmul.
#include "tests/cuda_emu/emu.h"  // first: the kernels compile against it

#include "peng/core/cuda/kernels/matmul.cuh"
#include "tests/kernels/kernel_check.h"

namespace peng {
namespace {

using namespace kernel_test;
namespace k = cuda::kernels;

struct Case {
  int64_t n;
  int c;
};
// One element; columns not a multiple of a warp; rows not a multiple of the 8 row lanes;
// more rows than the grid covers in one stride (8 lanes x 64 row blocks = 512).
const Case kCases[] = {{1, 1}, {3, 7}, {37, 771}, {129, 64}, {1100, 45}};

// The CPU backend's dbias += column sums of dy (through linear_backward with Cin = 1).
void cpu_bias_grad(const Tensor& dy, Tensor& dbias) {
  const int64_t n = dy.dim(0), c = dy.dim(1);
  Tensor x = random({n, 1}, 99), w = random({1, c}, 98);
  Tensor dx, dw = Tensor::zeros({1, c});
  cpu_backend().linear_backward(dy, x, w, dx, dw, dbias);
}

TEST(MatmulKernel, BiasGradMatchesCpuAndAccumulates) {
  uint64_t seed = 1;
  for (const Case& t : kCases) {
    Tensor dy = random({t.n, t.c}, seed++);
    Tensor db = random({t.c}, seed++);  // accumulated into: start nonzero on both sides
    Tensor db_ref = db.clone();
    emu::Launch launch;
    k::bias_grad(launch, dy.data<const float>(), t.n, t.c, db.data<float>());
    cpu_bias_grad(dy, db_ref);
    const double tol = t.n > 1024 ? kF32LongReduction : kF32;
    EXPECT_LE(relative_error(db, db_ref), tol) << t.n << "x" << t.c;
  }
}

TEST(MatmulKernel, BiasGradOfNoRowsAddsNothing) {
  Tensor db = random({5}, 3), db_ref = db.clone();
  emu::Launch launch;
  k::bias_grad(launch, static_cast<const float*>(nullptr), 0, 5, db.data<float>());
  EXPECT_EQ(launch.launches, 0);
  EXPECT_EQ(relative_error(db, db_ref), 0.0);
}

TEST(MatmulKernel, BiasGradIsDeterministic) {
  const int64_t n = 1500;
  const int c = 33;
  Tensor dy = random({n, c}, 5);
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Tensor db = Tensor::zeros({c});
    emu::Launch launch;
    k::bias_grad(launch, dy.data<const float>(), n, c, db.data<float>());
    std::vector<float> got(db.data<float>(), db.data<float>() + c);
    if (run == 0) {
      first = got;
    } else {
      EXPECT_EQ(got, first);
    }
  }
}

TEST(MatmulKernel, Bf16BiasGradWithinBf16Rounding) {
  const int64_t n = 77;
  const int c = 50;
  Tensor dy = random({n, c}, 21);
  std::vector<__nv_bfloat16> dy_b(size_t(n * c));
  for (int64_t i = 0; i < n * c; ++i) {
    dy_b[size_t(i)] = __float2bfloat16(dy.data<float>()[i]);
    dy.data<float>()[i] = __bfloat162float(dy_b[size_t(i)]);  // the same values on both sides
  }
  Tensor db = Tensor::zeros({c}), db_ref = Tensor::zeros({c});
  emu::Launch launch;
  k::bias_grad(launch, dy_b.data(), n, c, db.data<float>());
  cpu_bias_grad(dy, db_ref);
  EXPECT_LE(relative_error(db, db_ref), kF32);  // f32 accumulation of exact bf16 inputs
}

// A product with an empty inner dimension: out = beta out (CPU matmul) or the bias rows.
TEST(MatmulKernel, FillOfEmptyInnerDimensionMatchesCpu) {
  const int64_t m = 37, n = 45;
  for (float beta : {0.0f, 0.5f, 1.0f}) {
    Tensor c = random({m, n}, 31);
    Tensor c_ref = c.clone();
    if (beta == 0.0f) c = poisoned({m, n});  // beta 0 overwrites, never reads
    emu::Launch launch;
    k::fill_rows(launch, c.data<float>(), m, n, static_cast<const float*>(nullptr), beta);
    MatmulOptions opt;
    opt.beta = beta;
    cpu_backend().matmul(Tensor::empty({m, 0}), Tensor::empty({0, n}), c_ref, opt);
    EXPECT_EQ(relative_error(c, c_ref), 0.0) << "beta " << beta;
  }
  Tensor bias = random({n}, 32), y = poisoned({m, n});
  emu::Launch launch;
  k::fill_rows(launch, y.data<float>(), m, n, bias.data<const float>(), 0.0f);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) ASSERT_EQ(y.data<float>()[i * n + j], bias.data<float>()[j]);
  }
}

}  // namespace
}  // namespace peng
