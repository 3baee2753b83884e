// kernels/layernorm.cuh under the CUDA emulation against CpuBackend's layernorm.
#include "tests/cuda_emu/emu.h"  // first: the kernels compile against it

#include "peng/core/cuda/kernels/layernorm.cuh"
#include "tests/kernels/bf16_check.h"

namespace peng {
namespace {

using namespace kernel_test;
namespace k = cuda::kernels;

struct Case {
  int64_t n;
  int c;
};
// Rows below and above the backward's block count, channels not a multiple of a warp or of
// the block, and a row longer than the block.
const Case kCases[] = {{1, 1}, {3, 7}, {37, 771}, {129, 64}, {200, 33}};

TEST(LayerNormKernel, ForwardMatchesCpu) {
  uint64_t seed = 1;
  for (const Case& t : kCases) {
    Tensor x = random({t.n, t.c}, seed++, -2, 3), w = random({t.c}, seed++),
           b = random({t.c}, seed++);
    Tensor y = poisoned({t.n, t.c}), mean = poisoned({t.n}), rstd = poisoned({t.n});
    emu::Launch launch;
    k::layernorm_forward(launch, x.data<const float>(), w.data<const float>(),
                         b.data<const float>(), 1e-5f, t.n, t.c, y.data<float>(),
                         mean.data<float>(), rstd.data<float>());
    Tensor y_ref = Tensor::empty({t.n, t.c}), mean_ref = Tensor::empty({t.n}),
           rstd_ref = Tensor::empty({t.n});
    cpu_backend().layernorm_forward(x, w, b, 1e-5f, y_ref, mean_ref, rstd_ref);
    EXPECT_LE(relative_error(y, y_ref), kF32) << t.n << "x" << t.c;
    EXPECT_LE(relative_error(mean, mean_ref), kF32) << t.n << "x" << t.c;
    EXPECT_LE(relative_error(rstd, rstd_ref), kF32) << t.n << "x" << t.c;
  }
}

TEST(LayerNormKernel, BackwardMatchesCpuAndAccumulates) {
  uint64_t seed = 100;
  for (const Case& t : kCases) {
    Tensor x = random({t.n, t.c}, seed++, -2, 3), w = random({t.c}, seed++),
           b = random({t.c}, seed++), dy = random({t.n, t.c}, seed++);
    Tensor y = Tensor::empty({t.n, t.c}), mean = Tensor::empty({t.n}), rstd = Tensor::empty({t.n});
    cpu_backend().layernorm_forward(x, w, b, 1e-5f, y, mean, rstd);
    // dx, dw, db are accumulated into: start from the same nonzero values on both sides.
    Tensor dx = random({t.n, t.c}, seed++), dw = random({t.c}, seed++), db = random({t.c}, seed++);
    Tensor dx_ref = dx.clone(), dw_ref = dw.clone(), db_ref = db.clone();
    emu::Launch launch;
    k::layernorm_backward(launch, dy.data<const float>(), x.data<const float>(),
                          w.data<const float>(), mean.data<const float>(), rstd.data<const float>(),
                          t.n, t.c, dx.data<float>(), dw.data<float>(), db.data<float>());
    cpu_backend().layernorm_backward(dy, x, w, mean, rstd, dx_ref, dw_ref, db_ref);
    EXPECT_LE(relative_error(dx, dx_ref), kF32) << t.n << "x" << t.c;
    EXPECT_LE(relative_error(dw, dw_ref), kF32) << t.n << "x" << t.c;
    EXPECT_LE(relative_error(db, db_ref), kF32) << t.n << "x" << t.c;
  }
}

TEST(LayerNormKernel, Bf16ForwardWithinBf16Rounding) {
  const int64_t n = 19;
  const int c = 97;
  Tensor x = random({n, c}, 7, -2, 3), w = random({c}, 8), b = random({c}, 9);
  std::vector<__nv_bfloat16> xb = to_bf16(x), wb = to_bf16(w), bb = to_bf16(b);
  std::vector<__nv_bfloat16> yb(size_t(n * c));
  Tensor mean = poisoned({n}), rstd = poisoned({n});
  emu::Launch launch;
  k::layernorm_forward(launch, xb.data(), wb.data(), bb.data(), 1e-5f, n, c, yb.data(),
                       mean.data<float>(), rstd.data<float>());
  Tensor y_ref = Tensor::empty({n, c}), mean_ref = Tensor::empty({n}),
         rstd_ref = Tensor::empty({n});
  cpu_backend().layernorm_forward(x, w, b, 1e-5f, y_ref, mean_ref, rstd_ref);
  EXPECT_LE(relative_error(from_bf16(yb, {n, c}), y_ref), 1e-2);
}

TEST(LayerNormKernel, BackwardIsDeterministic) {
  const int64_t n = 300;
  const int c = 45;
  Tensor x = random({n, c}, 1), w = random({c}, 2), dy = random({n, c}, 3);
  Tensor mean = Tensor::empty({n}), rstd = Tensor::empty({n}), y = Tensor::empty({n, c});
  cpu_backend().layernorm_forward(x, w, random({c}, 4), 1e-5f, y, mean, rstd);
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Tensor dx = Tensor::zeros({n, c}), dw = Tensor::zeros({c}), db = Tensor::zeros({c});
    emu::Launch launch;
    k::layernorm_backward(launch, dy.data<const float>(), x.data<const float>(),
                          w.data<const float>(), mean.data<const float>(), rstd.data<const float>(),
                          n, c, dx.data<float>(), dw.data<float>(), db.data<float>());
    std::vector<float> got(dw.data<float>(), dw.data<float>() + c);
    if (run == 0)
      first = got;
    else
      EXPECT_EQ(got, first);
  }
}

}  // namespace
}  // namespace peng
