// kernels/rmsnorm.cuh and kernels/qk_norm.cuh under the CUDA emulation against CpuBackend's
// rmsnorm and qk_norm.
#include "tests/cuda_emu/emu.h"  // first: the kernels compile against it

#include "peng/core/cuda/kernels/qk_norm.cuh"
#include "peng/core/cuda/kernels/rmsnorm.cuh"
#include "tests/kernels/bf16_check.h"

namespace peng {
namespace {

using namespace kernel_test;
namespace k = cuda::kernels;

// ---- RMSNorm ----

struct RmsCase {
  int64_t n;
  int c;
};
// Rows below and above the backward's block count, channels not a multiple of a warp or of
// the block, and a row longer than the block.
const RmsCase kRmsCases[] = {{1, 1}, {3, 7}, {37, 771}, {129, 64}, {200, 33}};

TEST(RmsNormKernel, ForwardMatchesCpu) {
  uint64_t seed = 1;
  for (const RmsCase& t : kRmsCases) {
    Tensor x = random({t.n, t.c}, seed++, -2, 3), w = random({t.c}, seed++);
    Tensor y = poisoned({t.n, t.c}), rstd = poisoned({t.n});
    emu::Launch launch;
    k::rmsnorm_forward(launch, x.data<const float>(), w.data<const float>(), 1e-6f, t.n, t.c,
                       y.data<float>(), rstd.data<float>());
    Tensor y_ref = Tensor::empty({t.n, t.c}), rstd_ref = Tensor::empty({t.n});
    cpu_backend().rmsnorm_forward(x, w, 1e-6f, y_ref, rstd_ref);
    EXPECT_LE(relative_error(y, y_ref), kF32) << t.n << "x" << t.c;
    EXPECT_LE(relative_error(rstd, rstd_ref), kF32) << t.n << "x" << t.c;
  }
}

TEST(RmsNormKernel, BackwardMatchesCpuAndAccumulates) {
  uint64_t seed = 100;
  for (const RmsCase& t : kRmsCases) {
    Tensor x = random({t.n, t.c}, seed++, -2, 3), w = random({t.c}, seed++),
           dy = random({t.n, t.c}, seed++);
    Tensor y = Tensor::empty({t.n, t.c}), rstd = Tensor::empty({t.n});
    cpu_backend().rmsnorm_forward(x, w, 1e-6f, y, rstd);
    // dx and dw are accumulated into: start from the same nonzero values on both sides.
    Tensor dx = random({t.n, t.c}, seed++), dw = random({t.c}, seed++);
    Tensor dx_ref = dx.clone(), dw_ref = dw.clone();
    emu::Launch launch;
    k::rmsnorm_backward(launch, dy.data<const float>(), x.data<const float>(),
                        w.data<const float>(), rstd.data<const float>(), t.n, t.c, dx.data<float>(),
                        dw.data<float>());
    cpu_backend().rmsnorm_backward(dy, x, w, rstd, dx_ref, dw_ref);
    EXPECT_LE(relative_error(dx, dx_ref), kF32) << t.n << "x" << t.c;
    EXPECT_LE(relative_error(dw, dw_ref), kF32) << t.n << "x" << t.c;
  }
}

TEST(RmsNormKernel, BackwardIsDeterministic) {
  const int64_t n = 300;
  const int c = 45;
  Tensor x = random({n, c}, 1), w = random({c}, 2), dy = random({n, c}, 3);
  Tensor rstd = Tensor::empty({n}), y = Tensor::empty({n, c});
  cpu_backend().rmsnorm_forward(x, w, 1e-6f, y, rstd);
  std::vector<float> first_dw, first_dx;
  for (int run = 0; run < 2; ++run) {
    Tensor dx = Tensor::zeros({n, c}), dw = Tensor::zeros({c});
    emu::Launch launch;
    k::rmsnorm_backward(launch, dy.data<const float>(), x.data<const float>(),
                        w.data<const float>(), rstd.data<const float>(), n, c, dx.data<float>(),
                        dw.data<float>());
    std::vector<float> got_dw(dw.data<float>(), dw.data<float>() + c);
    std::vector<float> got_dx(dx.data<float>(), dx.data<float>() + n * c);
    if (run == 0) {
      first_dw = got_dw;
      first_dx = got_dx;
    } else {
      EXPECT_EQ(got_dw, first_dw);
      EXPECT_EQ(got_dx, first_dx);
    }
  }
}

TEST(RmsNormKernel, Bf16WithinBf16Rounding) {
  const int64_t n = 19;
  const int c = 97;
  Tensor x = random({n, c}, 7, -2, 3), w = random({c}, 8), dy = random({n, c}, 9);
  std::vector<__nv_bfloat16> xb = to_bf16(x), wb = to_bf16(w), dyb = to_bf16(dy);
  std::vector<__nv_bfloat16> yb(size_t(n * c)), dxb(size_t(n * c), __float2bfloat16(0.0f));
  Tensor rstd = poisoned({n}), dw = Tensor::zeros({c});
  emu::Launch launch;
  k::rmsnorm_forward(launch, xb.data(), wb.data(), 1e-6f, n, c, yb.data(), rstd.data<float>());
  k::rmsnorm_backward(launch, dyb.data(), xb.data(), wb.data(), rstd.data<const float>(), n, c,
                      dxb.data(), dw.data<float>());
  Tensor y_ref = Tensor::empty({n, c}), rstd_ref = Tensor::empty({n});
  cpu_backend().rmsnorm_forward(x, w, 1e-6f, y_ref, rstd_ref);
  Tensor dx_ref = Tensor::zeros({n, c}), dw_ref = Tensor::zeros({c});
  cpu_backend().rmsnorm_backward(dy, x, w, rstd_ref, dx_ref, dw_ref);
  EXPECT_LE(relative_error(from_bf16(yb, {n, c}), y_ref), 1e-2);
  EXPECT_LE(relative_error(rstd, rstd_ref), 1e-2);
  EXPECT_LE(relative_error(from_bf16(dxb, {n, c}), dx_ref), 1e-2);
  EXPECT_LE(relative_error(dw, dw_ref), 1e-2);
}

// ---- q/k norm ----

struct QkCase {
  int64_t b, t;
  int h, k, hd;
};
// One channel; heads shorter and longer than a warp (odd sizes); multi-head (K = H) and GQA;
// and B*T*(H + 2K) = 1280 head slots, more than the backward's 64 blocks x 8 warps, so warps
// take several slots.
const QkCase kQkCases[] = {
    {1, 1, 1, 1, 1}, {2, 3, 4, 2, 7}, {3, 5, 3, 3, 33}, {1, 4, 2, 1, 64}, {4, 40, 4, 2, 20}};

Shape qkv_shape(const QkCase& c) { return {c.b, c.t, int64_t(c.h + 2 * c.k) * c.hd}; }

TEST(QkNormKernel, ForwardMatchesCpu) {
  uint64_t seed = 200;
  for (const QkCase& c : kQkCases) {
    const Shape shape = qkv_shape(c);
    const int64_t rows = c.b * c.t;
    Tensor qkv = random(shape, seed++, -2, 3), wq = random({c.hd}, seed++),
           wk = random({c.hd}, seed++);
    Tensor out = poisoned(shape), rstd = poisoned({rows, c.h + c.k});
    emu::Launch launch;
    k::qk_norm_forward(launch, qkv.data<const float>(), wq.data<const float>(),
                       wk.data<const float>(), 1e-6f, rows, c.h, c.k, c.hd, out.data<float>(),
                       rstd.data<float>());
    Tensor out_ref = Tensor::empty(shape), rstd_ref = Tensor::empty({rows, c.h + c.k});
    cpu_backend().qk_norm_forward(qkv, c.h, c.k, wq, wk, 1e-6f, out_ref, rstd_ref);
    EXPECT_LE(relative_error(out, out_ref), kF32) << shape_str(shape) << " H " << c.h;
    EXPECT_LE(relative_error(rstd, rstd_ref), kF32) << shape_str(shape) << " H " << c.h;
  }
}

TEST(QkNormKernel, BackwardMatchesCpuAndAccumulates) {
  uint64_t seed = 300;
  for (const QkCase& c : kQkCases) {
    for (bool in_place : {false, true}) {
      const Shape shape = qkv_shape(c);
      const int64_t rows = c.b * c.t;
      Tensor qkv = random(shape, seed++, -2, 3), wq = random({c.hd}, seed++),
             wk = random({c.hd}, seed++), dout = random(shape, seed++);
      Tensor out = Tensor::empty(shape), rstd = Tensor::empty({rows, c.h + c.k});
      cpu_backend().qk_norm_forward(qkv, c.h, c.k, wq, wk, 1e-6f, out, rstd);
      // dwq and dwk are accumulated into; dqkv is overwritten (poisoned unless it is dout).
      Tensor dwq = random({c.hd}, seed++), dwk = random({c.hd}, seed++);
      Tensor dwq_ref = dwq.clone(), dwk_ref = dwk.clone();
      Tensor dout_ref = dout.clone();
      Tensor dqkv = in_place ? dout : poisoned(shape);
      Tensor dqkv_ref = in_place ? dout_ref : Tensor::empty(shape);
      emu::Launch launch;
      k::qk_norm_backward(launch, dout.data<const float>(), qkv.data<const float>(),
                          wq.data<const float>(), wk.data<const float>(), rstd.data<const float>(),
                          rows, c.h, c.k, c.hd, dqkv.data<float>(), dwq.data<float>(),
                          dwk.data<float>());
      cpu_backend().qk_norm_backward(dout_ref, qkv, c.h, c.k, wq, wk, rstd, dqkv_ref, dwq_ref,
                                     dwk_ref);
      const std::string what = shape_str(shape) + (in_place ? " in place" : "");
      EXPECT_LE(relative_error(dqkv, dqkv_ref), kF32) << what;
      EXPECT_LE(relative_error(dwq, dwq_ref), kF32) << what;
      EXPECT_LE(relative_error(dwk, dwk_ref), kF32) << what;
    }
  }
}

TEST(QkNormKernel, BackwardIsDeterministic) {
  const QkCase c{4, 40, 4, 2, 20};
  const Shape shape = qkv_shape(c);
  const int64_t rows = c.b * c.t;
  Tensor qkv = random(shape, 1), wq = random({c.hd}, 2), wk = random({c.hd}, 3),
         dout = random(shape, 4);
  Tensor out = Tensor::empty(shape), rstd = Tensor::empty({rows, c.h + c.k});
  cpu_backend().qk_norm_forward(qkv, c.h, c.k, wq, wk, 1e-6f, out, rstd);
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Tensor dqkv = Tensor::empty(shape), dwq = Tensor::zeros({c.hd}), dwk = Tensor::zeros({c.hd});
    emu::Launch launch;
    k::qk_norm_backward(launch, dout.data<const float>(), qkv.data<const float>(),
                        wq.data<const float>(), wk.data<const float>(), rstd.data<const float>(),
                        rows, c.h, c.k, c.hd, dqkv.data<float>(), dwq.data<float>(),
                        dwk.data<float>());
    std::vector<float> got(dwq.data<float>(), dwq.data<float>() + c.hd);
    got.insert(got.end(), dwk.data<float>(), dwk.data<float>() + c.hd);
    if (run == 0)
      first = got;
    else
      EXPECT_EQ(got, first);
  }
}

TEST(QkNormKernel, Bf16WithinBf16Rounding) {
  const QkCase c{2, 5, 4, 2, 40};
  const Shape shape = qkv_shape(c);
  const int64_t rows = c.b * c.t;
  Tensor qkv = random(shape, 11, -2, 3), wq = random({c.hd}, 12), wk = random({c.hd}, 13),
         dout = random(shape, 14);
  std::vector<__nv_bfloat16> qkvb = to_bf16(qkv), wqb = to_bf16(wq), wkb = to_bf16(wk),
                             doutb = to_bf16(dout);
  std::vector<__nv_bfloat16> outb(qkvb.size()), dqkvb(qkvb.size());
  Tensor rstd = poisoned({rows, c.h + c.k}), dwq = Tensor::zeros({c.hd}),
         dwk = Tensor::zeros({c.hd});
  emu::Launch launch;
  k::qk_norm_forward(launch, qkvb.data(), wqb.data(), wkb.data(), 1e-6f, rows, c.h, c.k, c.hd,
                     outb.data(), rstd.data<float>());
  k::qk_norm_backward(launch, doutb.data(), qkvb.data(), wqb.data(), wkb.data(),
                      rstd.data<const float>(), rows, c.h, c.k, c.hd, dqkvb.data(),
                      dwq.data<float>(), dwk.data<float>());
  Tensor out_ref = Tensor::empty(shape), rstd_ref = Tensor::empty({rows, c.h + c.k});
  cpu_backend().qk_norm_forward(qkv, c.h, c.k, wq, wk, 1e-6f, out_ref, rstd_ref);
  Tensor dqkv_ref = Tensor::empty(shape), dwq_ref = Tensor::zeros({c.hd}),
         dwk_ref = Tensor::zeros({c.hd});
  cpu_backend().qk_norm_backward(dout, qkv, c.h, c.k, wq, wk, rstd_ref, dqkv_ref, dwq_ref, dwk_ref);
  EXPECT_LE(relative_error(from_bf16(outb, shape), out_ref), 1e-2);
  EXPECT_LE(relative_error(rstd, rstd_ref), 1e-2);
  EXPECT_LE(relative_error(from_bf16(dqkvb, shape), dqkv_ref), 1e-2);
  EXPECT_LE(relative_error(dwq, dwq_ref), 1e-2);
  EXPECT_LE(relative_error(dwk, dwk_ref), 1e-2);
}

}  // namespace
}  // namespace peng
