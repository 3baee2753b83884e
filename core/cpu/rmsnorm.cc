// RMSNorm over the last dimension, forward and backward (Llama / Qwen's norm, on the CPU).
//
// Layout: x, y, dy, dx are (N, C) row-major (leading dimensions flattened), w (C), rstd (N).
// Rows are spread over OpenMP threads.
// Forward, per row: rstd = 1 / sqrt(mean(x^2) + eps) (the sum of squares as 16 SIMD partial
// sums, cpu::dot), y = x * rstd * w. No mean is subtracted and there is no bias.
// Backward, with xhat = x * rstd and g = w * dy (d rstd / dx_j = -x_j rstd^3 / C):
//   dx += rstd * (g - xhat * mean(g * xhat))      (added into: residual stream)
//   dw += sum_rows dy * xhat
// dw is first reduced into one buffer per thread, then summed over the threads in a fixed
// order (deterministic for a given thread count). The buffer is kept across calls
// (thread_local on the calling thread): no allocation per call.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "peng/core/cpu/cpu_backend.h"

namespace peng {
void CpuBackend::rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y,
                                 Tensor& rstd) {
  const char* op = "rmsnorm_forward";
  const auto [n, c] = checks::check_rmsnorm(Device::cpu(), op, x, w, rstd);
  cpu::check_shape(op, "y", y, x.shape());
  cpu::check_no_overlap(op, "y", y, "x", x);
  cpu::check_no_overlap(op, "rstd", rstd, "x", x);
  cpu::check_no_overlap(op, "rstd", rstd, "y", y);

  const float* px = x.data<const float>();
  const float* pw = w.data<const float>();
  float* py = y.data<float>();
  float* prstd = rstd.data<float>();
  const float inv_c = 1.0f / float(c);
#pragma omp parallel for schedule(static) if (n * c >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    prstd[i] = cpu::rms_norm_row(px + i * c, pw, eps, c, inv_c, py + i * c);
  }
}

void CpuBackend::rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                  const Tensor& rstd, Tensor& dx, Tensor& dw) {
  const char* op = "rmsnorm_backward";
  const auto [n, c] = checks::check_rmsnorm(Device::cpu(), op, x, w, rstd);
  cpu::check_shape(op, "dy", dy, x.shape());
  cpu::check_shape(op, "dx", dx, x.shape());
  cpu::check_shape(op, "dw", dw, {c});
  cpu::check_no_overlap(op, "dx", dx, "x", x);
  cpu::check_no_overlap(op, "dw", dw, "dy", dy);
  cpu::check_no_overlap(op, "dw", dw, "x", x);
  cpu::check_no_overlap(op, "dw", dw, "dx", dx);

  const float* pdy = dy.data<const float>();
  const float* px = x.data<const float>();
  const float* pw = w.data<const float>();
  const float* prstd = rstd.data<const float>();
  float* pdx = dx.data<float>();
  float* pdw = dw.data<float>();
  const float inv_c = 1.0f / float(c);

  const bool par = n * c >= cpu::kParallelMin;
  const int max_threads = par ? omp_get_max_threads() : 1;
  thread_local std::vector<float> partial;  // per thread dw (C)
  if (partial.size() < size_t(max_threads) * size_t(c)) {
    partial.resize(size_t(max_threads) * size_t(c));
  }
  std::fill(partial.begin(), partial.begin() + size_t(max_threads) * size_t(c), 0.0f);
  float* ppart = partial.data();
  int used_threads = 1;
#pragma omp parallel if (par)
  {
    const int t = omp_get_thread_num();
#pragma omp single
    used_threads = omp_get_num_threads();
    float* tdw = ppart + size_t(t) * size_t(c);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      cpu::rms_norm_row_backward<true>(pdy + i * c, px + i * c, pw, prstd[i], c, inv_c, pdx + i * c,
                                       tdw);
    }
  }
  // Sum the per-thread partials in thread order.
  for (int t = 0; t < used_threads; ++t) {
    const float* tdw = ppart + size_t(t) * size_t(c);
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) pdw[j] += tdw[j];
  }
}

}  // namespace peng
