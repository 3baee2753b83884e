// CpuBackend: the Backend ops on the host, with OpenBLAS (sgemm) and OpenMP.
//
// One file per op family, llm.c style; each defines the CpuBackend members of its family:
//   matmul.cc         matmul, linear_forward/backward (cblas_sgemm, bias folded into beta;
//                     both weight layouts)
//   layernorm.cc      layernorm_forward/backward
//   rmsnorm.cc        rmsnorm_forward/backward
//   gelu.cc           gelu_forward/backward
//   swiglu.cc         swiglu_forward/backward
//   qk_norm.cc        qk_norm_forward/backward (per-head RMSNorm of a fused qkv's q and k)
//   rope.cc           rope_forward/backward (rotate_half, in place)
//   attention.cc      attention_forward/backward (causal, grouped-query; per (b, head) sgemm
//                     on strided qkv slices)
//   embedding.cc      embedding_forward/backward (whole table and vocabulary shard)
//   cross_entropy.cc  cross_entropy_forward/backward (whole vocabulary and shard)
//   elementwise.cc    add, scale
//   moe.cc            moe_route/_backward (router scores, top-k), gather_rows,
//                     scatter_add_rows, rows_dot (moving token rows to experts and back)
//   adamw.cc          adamw_update, sum_squares(_into), sum_into
//
// Threading: ops parallelise with OpenMP. OpenBLAS (OpenMP build) runs cblas_sgemm
// single-threaded inside a parallel region; the GEMM ops split each product over the
// threads themselves (matmul.cc), attention gives each thread whole (b, head) pairs, the
// row-wise ops (norms, SwiGLU, RoPE) give each thread a block of rows.
// Every op validates dtype, device and shapes and throws peng::Error naming the op and the
// offending tensor.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "peng/core/backend.h"
#include "peng/core/error.h"
#include "peng/core/op_checks.h"

namespace peng {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::cpu(); }
  const char* name() const override { return "cpu"; }

  void matmul(const Tensor& a, const Tensor& b, Tensor& out,
              const MatmulOptions& opt = {}) override;
  void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                      WeightLayout layout = WeightLayout::kInOut) override;
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx, Tensor& dw,
                       Tensor& dbias, WeightLayout layout = WeightLayout::kInOut) override;

  void layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y,
                         Tensor& mean, Tensor& rstd) override;
  void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd, Tensor& dx, Tensor& dw, Tensor& db) override;

  void gelu_forward(const Tensor& x, Tensor& y) override;
  void gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) override;

  void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y,
                       Tensor& rstd) override;
  void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                        Tensor& dx, Tensor& dw) override;

  void swiglu_forward(const Tensor& gate_up, Tensor& out) override;
  void swiglu_backward(const Tensor& dout, const Tensor& gate_up, Tensor& dgate_up) override;

  void qk_norm_forward(const Tensor& qkv, int n_head, int n_kv_head, const Tensor& wq,
                       const Tensor& wk, float eps, Tensor& out, Tensor& rstd) override;
  void qk_norm_backward(const Tensor& dout, const Tensor& qkv, int n_head, int n_kv_head,
                        const Tensor& wq, const Tensor& wk, const Tensor& rstd, Tensor& dqkv,
                        Tensor& dwq, Tensor& dwk) override;

  void rope_forward(Tensor& x, int n_heads, int n_rot, const Tensor& cos,
                    const Tensor& sin) override;
  void rope_backward(Tensor& dx, int n_heads, int n_rot, const Tensor& cos,
                     const Tensor& sin) override;

  using Backend::attention_backward;
  using Backend::attention_forward;
  void attention_forward(const Tensor& qkv, int n_head, int n_kv_head, Tensor& out,
                         Tensor& att) override;
  void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& att, int n_head,
                          int n_kv_head, Tensor& dqkv) override;
  double attention_work_fraction(int64_t seq_len) const override;

  void embedding_forward(const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                         Tensor& out) override;
  void embedding_backward(const Tensor& dout, const Tensor& tokens, Tensor& dwte,
                          Tensor& dwpe) override;

  void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                             Tensor& losses) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                              float dloss, Tensor& dlogits) override;

  void embedding_forward_shard(const Tensor& tokens, const Tensor& wte_shard, int64_t vocab_begin,
                               const Tensor& wpe, Tensor& out) override;
  void embedding_backward_shard(const Tensor& dout, const Tensor& tokens, int64_t vocab_begin,
                                Tensor& dwte_shard, Tensor& dwpe) override;
  void cross_entropy_shard_max(const Tensor& logits, int64_t valid, Tensor& row_max) override;
  void cross_entropy_shard_sums(const Tensor& logits, const Tensor& targets, int64_t vocab_begin,
                                int64_t valid, const Tensor& row_max, Tensor& stats) override;
  void cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets,
                                    int64_t vocab_begin, int64_t valid, const Tensor& row_max,
                                    const Tensor& stats, float dloss, Tensor& dlogits) override;

  void add(const Tensor& a, const Tensor& b, Tensor& out) override;
  void scale(Tensor& x, float s) override;
  void cast(const Tensor& x, Tensor& y) override;

  void moe_route(const Tensor& logits, const Tensor& bias, const MoeRouting& r, Tensor& scores,
                 Tensor& chosen, Tensor& weights, Tensor& prob_sums) override;
  void moe_route_backward(const Tensor& dweights, const Tensor& scores, const Tensor& chosen,
                          const Tensor& aux, const MoeRouting& r, Tensor& dlogits) override;
  void gather_rows(const Tensor& x, const Tensor& index, const Tensor& weight,
                   Tensor& out) override;
  void scatter_add_rows(const Tensor& src, const Tensor& index, const Tensor& weight,
                        Tensor& out) override;
  void rows_dot(const Tensor& a, const Tensor& b, Tensor& out) override;

  void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                    const AdamWOptions& opt) override;
  double sum_squares(const Tensor& x) override;
  void sum_squares_into(const Tensor& x, Tensor& acc) override;
  void sum_into(const Tensor& x, Tensor& acc) override;
};

namespace cpu {

// ---- argument checks shared by the op files ----

// core/op_checks.h's checks on the CPU.
inline void check_tensor(const char* op, const char* name, const Tensor& t,
                         DType dtype = DType::kF32) {
  checks::check_tensor(Device::cpu(), op, name, t, dtype);
}
inline void check_shape(const char* op, const char* name, const Tensor& t, const Shape& shape,
                        DType dtype = DType::kF32) {
  checks::check_shape(Device::cpu(), op, name, t, shape, dtype);
}
using checks::check_no_overlap;
using checks::QkvDims;
using checks::rows_of;
inline QkvDims check_qkv(const char* op, const Tensor& qkv, int n_head, int n_kv_head) {
  return checks::check_qkv(Device::cpu(), op, qkv, n_head, n_kv_head);
}

// Work below this many elements is not worth waking the OpenMP team for.
constexpr int64_t kParallelMin = 1 << 14;

// ---- fast vectorisable math ----

// exp(x) for f32 inside `omp simd` loops: Cody-Waite range reduction x = n ln2 + r,
// |r| <= ln2/2, the Cephes expf polynomial for e^r, and 2^n built in the exponent bits.
// Max relative error ~2 ulp. x is clamped to [-87, 87] so the result is always a finite
// normal number (exp(-87) ~ 1.6e-38, exp(87) ~ 6e37); callers rely on that (no inf/NaN).
inline float fast_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  x = x < -87.0f ? -87.0f : x;
  x = x > 87.0f ? 87.0f : x;
  float n = (x * kLog2e + kRound) - kRound;
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// max_j<n x_j for n >= 1 (a NaN is skipped unless it is x_0). Written as a compare-select
// so that it vectorises (std::max in an `omp simd` max-reduction does not, with GCC 12).
inline float row_max(const float* x, int64_t n) {
  float m = x[0];
#pragma omp simd reduction(max : m)
  for (int64_t j = 1; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// sum_j x[j] * y[j] over [0, n), as 16 SIMD partial sums finished by a tree. (GCC 12 ends
// an `omp simd` +-reduction with 16 serial scalar adds, which dominates on short rows.)
inline float dot(const float* x, const float* y, int64_t n) {
  float acc[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
#pragma omp simd
    for (int l = 0; l < 16; ++l) acc[l] += x[j + l] * y[j + l];
  }
#pragma omp simd
  for (int l = 0; l < 16; ++l) acc[l] += j + l < n ? x[j + l] * y[j + l] : 0.0f;
  for (int w = 8; w > 0; w >>= 1) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

// x[j] = exp(x[j] - mx) for j < n_valid and 0 for n_valid <= j < n; returns the sum.
// 16 SIMD partial sums finished by a tree, like `dot`.
inline float exp_and_sum(float* x, int64_t n_valid, int64_t n, float mx) {
  float acc[16] = {};
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const int64_t len = n - j0 < 16 ? n - j0 : 16;
#pragma omp simd
    for (int l = 0; l < 16; ++l) {
      if (l < len) {
        const float e = j0 + l < n_valid ? fast_exp(x[j0 + l] - mx) : 0.0f;
        x[j0 + l] = e;
        acc[l] += e;
      }
    }
  }
  for (int w = 8; w > 0; w >>= 1) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

// ---- one RMSNorm row (rmsnorm.cc, and qk_norm.cc per head) ----

// y[0, n) = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps), inv_n = 1 / n; returns rstd.
inline float rms_norm_row(const float* x, const float* w, float eps, int64_t n, float inv_n,
                          float* y) {
  const float rs = 1.0f / std::sqrt(dot(x, x, n) * inv_n + eps);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] = x[j] * rs * w[j];
  return rs;
}

// The row's gradient: dw += dy * xhat; dx = rstd * (w * dy - xhat * mean(w * dy * xhat)),
// ADDED into dx with kAdd (the residual stream), else written (dx may then alias dy).
template <bool kAdd>
inline void rms_norm_row_backward(const float* dy, const float* x, const float* w, float rs,
                                  int64_t n, float inv_n, float* dx, float* dw) {
  float gx_sum = 0.0f;
#pragma omp simd reduction(+ : gx_sum)
  for (int64_t j = 0; j < n; ++j) gx_sum += w[j] * dy[j] * x[j];
  const float gx_mean = gx_sum * rs * inv_n;  // mean(g * xhat)
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const float d = dy[j];
    const float xhat = x[j] * rs;
    dw[j] += d * xhat;
    const float g = rs * (w[j] * d - xhat * gx_mean);
    if constexpr (kAdd) {
      dx[j] += g;
    } else {
      dx[j] = g;
    }
  }
}

}  // namespace cpu
}  // namespace peng
