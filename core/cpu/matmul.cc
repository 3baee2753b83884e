// matmul and linear (both weight layouts) on the CPU: every product is cblas_sgemm.
//
// Layout: all tensors row-major and contiguous, so a stored (R, S) matrix has ld = S and a
// transposed operand is passed to sgemm as CblasTrans with its stored leading dimension.
// Threading: a product is split into one block of output rows (or columns) per OpenMP
// thread, each computed by a single-threaded sgemm (see `sgemm` below).
// linear_forward folds the bias into the GEMM: each thread fills its block of y with the
// broadcast bias and runs sgemm with beta = 1. linear_backward is two GEMMs (dx overwriting,
// dw accumulating with beta = 1) and an OpenMP column sum of dy for dbias. The weight
// layout only picks the transposes (w is read in place, never copied):
//   kInOut  w (Cin, Cout):  y = x w + b,    dx = dy w^T,  dw (Cin, Cout) += x^T dy
//   kOutIn  w (Cout, Cin):  y = x w^T + b,  dx = dy w,    dw (Cout, Cin) += dy^T x
// Batched (3-D) matmul loops over the batch: small matrices are spread over the threads
// (one whole product each), large ones are split as above.
#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "peng/core/cpu/cpu_backend.h"

namespace peng {
namespace {

// c (m, n) = alpha * op(a) @ op(b) + beta * c for row-major a, b, c with leading dims: one
// cblas_sgemm call (single-threaded when made inside an OpenMP parallel region).
void sgemm_call(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m),
              int(n), int(k), alpha, a, int(std::max<int64_t>(lda, 1)), b,
              int(std::max<int64_t>(ldb, 1)), beta, c, int(std::max<int64_t>(ldc, 1)));
}

// Fills c (m, n) (leading dim ldc) with the broadcast row `bias` (n).
void fill_bias(float* c, int64_t m, int64_t n, int64_t ldc, const float* bias) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) row[j] = bias[j];
  }
}

// c (m, n) = alpha * op(a) @ op(b) + beta * c; with `bias`, c is first filled with the
// broadcast bias (n) and beta must be 1.
// Outside a parallel region the output is split into one block of rows (or of columns,
// when there are too few rows) per OpenMP thread, each computed by a single-threaded sgemm
// (OpenBLAS runs single-threaded inside a parallel region). For the skinny products of
// small models (K = 256 .. 4096) this beats OpenBLAS's own threading, which synchronises
// inside every call. Split points are multiples of 64 to keep the micro-kernels' tiles full.
void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
           const float* bias = nullptr) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // op(a) @ op(b) is all zeros: c = beta * c (beta = 0 overwrites NaNs too)
    if (bias) return fill_bias(c, m, n, ldc, bias);
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
    }
    return;
  }
  constexpr int64_t kAlign = 64;
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool big = 2 * m * n * k >= (int64_t(1) << 22);
  const bool split_m = m >= 2 * kAlign * nt || m >= n;
  const int64_t extent = split_m ? m : n;
  if (nt == 1 || !big || extent < 2 * kAlign) {
    if (bias) fill_bias(c, m, n, ldc, bias);
    return sgemm_call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), nthr = omp_get_num_threads();
    int64_t chunk = (extent + nthr - 1) / nthr;
    chunk = (chunk + kAlign - 1) / kAlign * kAlign;
    const int64_t lo = std::min(extent, t * chunk), hi = std::min(extent, lo + chunk);
    if (hi > lo) {
      if (split_m) {  // rows [lo, hi) of c: rows of op(a)
        const float* a_blk = ta ? a + lo : a + lo * lda;
        float* c_blk = c + lo * ldc;
        if (bias) fill_bias(c_blk, hi - lo, n, ldc, bias);
        sgemm_call(ta, tb, hi - lo, n, k, alpha, a_blk, lda, b, ldb, beta, c_blk, ldc);
      } else {  // columns [lo, hi) of c: columns of op(b)
        const float* b_blk = tb ? b + lo * ldb : b + lo;
        float* c_blk = c + lo;
        if (bias) fill_bias(c_blk, m, hi - lo, ldc, bias + lo);
        sgemm_call(ta, tb, m, hi - lo, k, alpha, a, lda, b_blk, ldb, beta, c_blk, ldc);
      }
    }
  }
}

}  // namespace

// ---- matmul ----

void CpuBackend::matmul(const Tensor& a, const Tensor& b, Tensor& out, const MatmulOptions& opt) {
  const auto [batch, m, n, k, ar, ac, br, bc] = checks::check_matmul(Device::cpu(), a, b, out, opt);

  const float* pa = a.data<const float>();
  const float* pb = b.data<const float>();
  float* pc = out.data<float>();
  int64_t sa = ar * ac, sb = br * bc, sc = m * n;  // batch strides
  auto one = [&](int64_t i) {
    sgemm(opt.trans_a, opt.trans_b, m, n, k, opt.alpha, pa + i * sa, ac, pb + i * sb, bc, opt.beta,
          pc + i * sc, n);
  };
  // Small matrices: one sgemm per thread beats OpenBLAS's threading inside each product.
  bool spread = batch >= omp_get_max_threads() && 2 * m * n * k <= (int64_t(1) << 24);
  if (spread) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < batch; ++i) one(i);
  } else {
    for (int64_t i = 0; i < batch; ++i) one(i);
  }
}

// ---- linear ----

void CpuBackend::linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                                WeightLayout layout) {
  const auto [n, cin, cout, ys] =
      checks::check_linear_forward(Device::cpu(), x, w, bias, y, layout);

  const float* px = x.data<const float>();
  const float* pw = w.data<const float>();
  float* py = y.data<float>();
  const float* pb = bias.defined() ? bias.data<const float>() : nullptr;
  if (layout == WeightLayout::kInOut) {  // y (N, Cout) = bias + x (N, Cin) @ w (Cin, Cout)
    sgemm(false, false, n, cout, cin, 1.0f, px, cin, pw, cout, pb ? 1.0f : 0.0f, py, cout, pb);
  } else {  // y (N, Cout) = bias + x (N, Cin) @ w^T (Cin, Cout), w stored (Cout, Cin)
    sgemm(false, true, n, cout, cin, 1.0f, px, cin, pw, cin, pb ? 1.0f : 0.0f, py, cout, pb);
  }
}

void CpuBackend::linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx,
                                 Tensor& dw, Tensor& dbias, WeightLayout layout) {
  const auto [n, cin, cout, ys] =
      checks::check_linear_backward(Device::cpu(), dy, x, w, dx, dw, dbias, layout);
  const bool out_in = layout == WeightLayout::kOutIn;

  const float* pdy = dy.data<const float>();
  const float* px = x.data<const float>();
  const float* pw = w.data<const float>();
  float* pdw = dw.data<float>();
  if (!out_in) {
    if (dx.defined()) {  // dx (N, Cin) = dy (N, Cout) @ w^T (Cout, Cin)
      sgemm(false, true, n, cin, cout, 1.0f, pdy, cout, pw, cout, 0.0f, dx.data<float>(), cin);
    }
    // dw (Cin, Cout) += x^T (Cin, N) @ dy (N, Cout)
    sgemm(true, false, cin, cout, n, 1.0f, px, cin, pdy, cout, 1.0f, pdw, cout);
  } else {
    if (dx.defined()) {  // dx (N, Cin) = dy (N, Cout) @ w (Cout, Cin)
      sgemm(false, false, n, cin, cout, 1.0f, pdy, cout, pw, cin, 0.0f, dx.data<float>(), cin);
    }
    // dw (Cout, Cin) += dy^T (Cout, N) @ x (N, Cin)
    sgemm(true, false, cout, cin, n, 1.0f, pdy, cout, px, cin, 1.0f, pdw, cin);
  }
  if (dbias.defined()) {  // dbias (Cout) += sum over rows of dy; threads own column ranges
    float* pdb = dbias.data<float>();
    bool par = n * cout >= cpu::kParallelMin;
#pragma omp parallel if (par)
    {
      int nt = omp_get_num_threads(), t = omp_get_thread_num();
      int64_t per = (cout + nt - 1) / nt;
      per = (per + 15) / 16 * 16;  // whole cache lines per thread
      int64_t c0 = std::min(cout, t * per), c1 = std::min(cout, c0 + per);
      // Column chunks summed on the stack (no allocation per call), then added to dbias.
      constexpr int64_t kChunk = 512;
      for (int64_t k0 = c0; k0 < c1; k0 += kChunk) {
        const int64_t len = std::min(kChunk, c1 - k0);
        float acc[kChunk] = {};
        for (int64_t i = 0; i < n; ++i) {
          const float* row = pdy + i * cout + k0;
#pragma omp simd
          for (int64_t j = 0; j < len; ++j) acc[j] += row[j];
        }
        for (int64_t j = 0; j < len; ++j) pdb[k0 + j] += acc[j];
      }
    }
  }
}

}  // namespace peng
