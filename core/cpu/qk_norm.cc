// Per-head RMSNorm of the query and key heads of a fused qkv (Qwen3's q_norm / k_norm), on
// the CPU, forward and backward.
//
// Layout: qkv, out, dout, dqkv (B, T, (H + 2K) * hd): per row (b, t), H query heads, K key
// heads, K value heads of hd channels each (core/backend.h). Head r < H + K of a row is
// normalised over its hd channels with wq (hd) for r < H (query heads) and wk (hd) for
// H <= r < H + K (key heads); value heads are copied. rstd (B*T, H + K), one per normed head.
// Rows are spread over OpenMP threads; the hd channels of a head are one `omp simd` loop.
// Forward, per head x (hd):  rstd = 1 / sqrt(mean(x^2) + eps),  y = x * rstd * w.
// Backward, with xhat = x * rstd and g = w * dy:
//   dx = rstd * (g - xhat * mean(g * xhat))     (overwritten; dqkv may alias dout: each head
//                                               is read whole before it is written)
//   dw += sum over rows dy * xhat               (dwq over query heads, dwk over key heads)
// dwq and dwk are reduced into one buffer per thread (kept across calls: thread_local on the
// calling thread), then summed over the threads in a fixed order.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "peng/core/cpu/cpu_backend.h"

namespace peng {

void CpuBackend::qk_norm_forward(const Tensor& qkv, int n_head, int n_kv_head, const Tensor& wq,
                                 const Tensor& wk, float eps, Tensor& out, Tensor& rstd) {
  const char* op = "qk_norm_forward";
  const cpu::QkvDims d =
      checks::check_qk_norm(Device::cpu(), op, qkv, n_head, n_kv_head, wq, wk, rstd);
  cpu::check_shape(op, "out", out, qkv.shape());
  cpu::check_no_overlap(op, "out", out, "qkv", qkv);
  cpu::check_no_overlap(op, "rstd", rstd, "qkv", qkv);
  cpu::check_no_overlap(op, "rstd", rstd, "out", out);

  const int64_t rows = d.b * d.t, hd = d.hd, width = d.width(), normed = d.h + d.k;
  const float* pqkv = qkv.data<const float>();
  const float* pwq = wq.data<const float>();
  const float* pwk = wk.data<const float>();
  float* pout = out.data<float>();
  float* prstd = rstd.data<float>();
  const float inv_hd = 1.0f / float(hd);
#pragma omp parallel for schedule(static) if (rows * width >= cpu::kParallelMin)
  for (int64_t i = 0; i < rows; ++i) {
    const float* xr = pqkv + i * width;  // ((H + 2K) * hd)
    float* yr = pout + i * width;        // ((H + 2K) * hd)
    for (int64_t r = 0; r < normed; ++r) {
      const float* w = r < d.h ? pwq : pwk;
      prstd[i * normed + r] = cpu::rms_norm_row(xr + r * hd, w, eps, hd, inv_hd, yr + r * hd);
    }
    std::memcpy(yr + normed * hd, xr + normed * hd, size_t(d.k * hd) * sizeof(float));  // v
  }
}

void CpuBackend::qk_norm_backward(const Tensor& dout, const Tensor& qkv, int n_head, int n_kv_head,
                                  const Tensor& wq, const Tensor& wk, const Tensor& rstd,
                                  Tensor& dqkv, Tensor& dwq, Tensor& dwk) {
  const char* op = "qk_norm_backward";
  const cpu::QkvDims d =
      checks::check_qk_norm(Device::cpu(), op, qkv, n_head, n_kv_head, wq, wk, rstd);
  cpu::check_shape(op, "dout", dout, qkv.shape());
  cpu::check_shape(op, "dqkv", dqkv, qkv.shape());
  cpu::check_shape(op, "dwq", dwq, {d.hd});
  cpu::check_shape(op, "dwk", dwk, {d.hd});
  const bool in_place = dqkv.raw_data() == dout.raw_data();
  if (!in_place) cpu::check_no_overlap(op, "dqkv", dqkv, "dout", dout);
  cpu::check_no_overlap(op, "dqkv", dqkv, "qkv", qkv);
  cpu::check_no_overlap(op, "dqkv", dqkv, "rstd", rstd);
  const std::pair<const char*, const Tensor*> read[] = {{"dout", &dout}, {"qkv", &qkv}};
  for (const auto& [name, t] : read) {
    cpu::check_no_overlap(op, "dwq", dwq, name, *t);
    cpu::check_no_overlap(op, "dwk", dwk, name, *t);
  }
  cpu::check_no_overlap(op, "dwq", dwq, "dqkv", dqkv);
  cpu::check_no_overlap(op, "dwk", dwk, "dqkv", dqkv);
  cpu::check_no_overlap(op, "dwq", dwq, "dwk", dwk);

  const int64_t rows = d.b * d.t, hd = d.hd, width = d.width(), normed = d.h + d.k;
  const float* pdout = dout.data<const float>();
  const float* pqkv = qkv.data<const float>();
  const float* pwq = wq.data<const float>();
  const float* pwk = wk.data<const float>();
  const float* prstd = rstd.data<const float>();
  float* pdqkv = dqkv.data<float>();
  float* pdwq = dwq.data<float>();
  float* pdwk = dwk.data<float>();
  const float inv_hd = 1.0f / float(hd);

  const bool par = rows * width >= cpu::kParallelMin;
  const int max_threads = par ? omp_get_max_threads() : 1;
  const size_t per_thread = 2 * size_t(hd);  // [dwq | dwk]
  thread_local std::vector<float> partial;
  if (partial.size() < size_t(max_threads) * per_thread) {
    partial.resize(size_t(max_threads) * per_thread);
  }
  std::fill(partial.begin(), partial.begin() + size_t(max_threads) * per_thread, 0.0f);
  float* ppart = partial.data();
  int used_threads = 1;
#pragma omp parallel if (par)
  {
    const int t = omp_get_thread_num();
#pragma omp single
    used_threads = omp_get_num_threads();
    float* tdwq = ppart + size_t(t) * per_thread;
    float* tdwk = tdwq + hd;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < rows; ++i) {
      const float* dyr = pdout + i * width;  // ((H + 2K) * hd)
      const float* xr = pqkv + i * width;    // ((H + 2K) * hd)
      float* dxr = pdqkv + i * width;        // ((H + 2K) * hd), may be dyr
      for (int64_t r = 0; r < normed; ++r) {
        cpu::rms_norm_row_backward<false>(dyr + r * hd, xr + r * hd, r < d.h ? pwq : pwk,
                                          prstd[i * normed + r], hd, inv_hd, dxr + r * hd,
                                          r < d.h ? tdwq : tdwk);
      }
      if (!in_place) {  // value heads: the gradient passes through
        std::memcpy(dxr + normed * hd, dyr + normed * hd, size_t(d.k * hd) * sizeof(float));
      }
    }
  }
  // Sum the per-thread partials in thread order.
  for (int t = 0; t < used_threads; ++t) {
    const float* tdwq = ppart + size_t(t) * per_thread;
    const float* tdwk = tdwq + hd;
#pragma omp simd
    for (int64_t j = 0; j < hd; ++j) {
      pdwq[j] += tdwq[j];
      pdwk[j] += tdwk[j];
    }
  }
}

}  // namespace peng
