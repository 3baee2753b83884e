// LayerNorm over the last dimension, forward and backward (llm.c layernorm, on the CPU).
//
// Layout: x, y, dy, dx are (N, C) row-major (leading dimensions flattened), w, b (C),
// mean, rstd (N). Rows are spread over OpenMP threads.
// Forward: two passes per row (mean, then the centred variance: no cancellation), both
// as 16-lane SIMD partial sums; rstd = 1 / sqrt(var + eps) with the biased variance.
// Backward, with xhat = (x - mean) * rstd and g = w * dy:
//   dx += rstd * (g - mean(g) - xhat * mean(g * xhat))      (added into: residual stream)
//   dw += sum_rows dy * xhat,  db += sum_rows dy
// dw / db are first reduced into one buffer per thread, then summed over the threads in a
// fixed order (deterministic for a given thread count).
#include <omp.h>

#include <vector>

#include "peng/core/cpu/cpu_backend.h"

namespace peng {

void CpuBackend::layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps,
                                   Tensor& y, Tensor& mean, Tensor& rstd) {
  const char* op = "layernorm_forward";
  const auto [n, c] = checks::check_layernorm(Device::cpu(), op, x, w, mean, rstd);
  cpu::check_shape(op, "b", b, {c});
  cpu::check_shape(op, "y", y, x.shape());

  const float* px = x.data<const float>();
  const float* pw = w.data<const float>();
  const float* pb = b.data<const float>();
  float* py = y.data<float>();
  float* pmean = mean.data<float>();
  float* prstd = rstd.data<float>();
  const float inv_c = 1.0f / float(c);
#pragma omp parallel for schedule(static) if (n * c >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* xr = px + i * c;  // (C)
    float* yr = py + i * c;        // (C)
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < c; ++j) sum += xr[j];
    const float m = sum * inv_c;
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < c; ++j) {
      float d = xr[j] - m;
      sq += d * d;
    }
    const float rs = 1.0f / std::sqrt(sq * inv_c + eps);
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - m) * rs * pw[j] + pb[j];
    pmean[i] = m;
    prstd[i] = rs;
  }
}

void CpuBackend::layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                    const Tensor& mean, const Tensor& rstd, Tensor& dx, Tensor& dw,
                                    Tensor& db) {
  const char* op = "layernorm_backward";
  const auto [n, c] = checks::check_layernorm(Device::cpu(), op, x, w, mean, rstd);
  cpu::check_shape(op, "dy", dy, x.shape());
  cpu::check_shape(op, "dx", dx, x.shape());
  cpu::check_shape(op, "dw", dw, {c});
  cpu::check_shape(op, "db", db, {c});

  const float* pdy = dy.data<const float>();
  const float* px = x.data<const float>();
  const float* pw = w.data<const float>();
  const float* pmean = mean.data<const float>();
  const float* prstd = rstd.data<const float>();
  float* pdx = dx.data<float>();
  float* pdw = dw.data<float>();
  float* pdb = db.data<float>();
  const float inv_c = 1.0f / float(c);

  bool par = n * c >= cpu::kParallelMin;
  int max_threads = par ? omp_get_max_threads() : 1;
  std::vector<float> partial(size_t(max_threads) * 2 * size_t(c), 0.0f);  // per thread [dw|db]
  int used_threads = 1;
#pragma omp parallel if (par)
  {
    const int t = omp_get_thread_num();
#pragma omp single
    used_threads = omp_get_num_threads();
    float* tdw = partial.data() + size_t(t) * 2 * size_t(c);
    float* tdb = tdw + c;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* dyr = pdy + i * c;  // (C)
      const float* xr = px + i * c;    // (C)
      float* dxr = pdx + i * c;        // (C)
      const float m = pmean[i], rs = prstd[i];
      float g_sum = 0.0f, gx_sum = 0.0f;
#pragma omp simd reduction(+ : g_sum, gx_sum)
      for (int64_t j = 0; j < c; ++j) {
        float g = pw[j] * dyr[j];
        g_sum += g;
        gx_sum += g * ((xr[j] - m) * rs);
      }
      const float g_mean = g_sum * inv_c, gx_mean = gx_sum * inv_c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        float d = dyr[j];
        float xhat = (xr[j] - m) * rs;
        tdw[j] += d * xhat;
        tdb[j] += d;
        dxr[j] += rs * (pw[j] * d - g_mean - xhat * gx_mean);
      }
    }
  }
  // Sum the per-thread partials in thread order.
  for (int t = 0; t < used_threads; ++t) {
    const float* tdw = partial.data() + size_t(t) * 2 * size_t(c);
    const float* tdb = tdw + c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      pdw[j] += tdw[j];
      pdb[j] += tdb[j];
    }
  }
}

}  // namespace peng
