// AdamW on a flat parameter range, and the double-precision sum of squares used for
// global gradient norms.
//
// adamw_update follows torch.optim.AdamW (single-tensor path, f32 state) operation by
// operation so results agree to the last bit or two:
//   p = p * (1 - lr*wd)
//   m = m + (1-b1) * (g - m)                      (lerp(m, g, 1-b1) = b1 m + (1-b1) g)
//   v = v * b2 + (1-b2) * g * g
//   p = p - step_size * m / (sqrt(v) / sqrt(bc2) + eps)
// with bc1 = 1 - b1^t, bc2 = 1 - b2^t, step_size = lr / bc1; the scalars are core/backend.h's
// adamw_scalars (double, rounded to f32 once). Each OpenMP thread takes a contiguous range,
// in SIMD blocks of 16.
// sum_squares: `omp parallel for simd` reduction in double.
#include <omp.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>

#include "peng/core/cpu/cpu_backend.h"

namespace peng {
namespace {

// sqrt of 16 floats. GCC vectorises std::sqrt only under -fno-math-errno (a negative
// argument would have to set errno), so the vector instruction is spelled out where the
// target has one; the results are the same correctly rounded IEEE square roots.
inline void sqrt16(const float* in, float* out) {
#if defined(__AVX512F__)
  // (maskz: the unmasked form trips a GCC 12 -Wmaybe-uninitialized false positive)
  _mm512_storeu_ps(out, _mm512_maskz_sqrt_ps(__mmask16(0xffff), _mm512_loadu_ps(in)));
#elif defined(__AVX__)
  _mm256_storeu_ps(out, _mm256_sqrt_ps(_mm256_loadu_ps(in)));
  _mm256_storeu_ps(out + 8, _mm256_sqrt_ps(_mm256_loadu_ps(in + 8)));
#else
  for (int l = 0; l < 16; ++l) out[l] = std::sqrt(in[l]);
#endif
}

inline float adamw_param(float p, float mi, float sqrt_v, const AdamWScalars& k) {
  return p * k.decay - k.step_size * (mi / (sqrt_v / k.bc2_sqrt + k.eps));
}

// One thread's contiguous range [0, n): blocks of 16 (moments, then one vector sqrt, then
// the parameter), and a scalar tail.
void adamw_range(float* pp, const float* pg, float* pm, float* pv, int64_t n,
                 const AdamWScalars& k) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    float mm[16], vv[16], sv[16];
#pragma omp simd
    for (int l = 0; l < 16; ++l) {
      const float g = pg[i + l];
      mm[l] = pm[i + l] + k.w1 * (g - pm[i + l]);
      vv[l] = pv[i + l] * k.b2 + k.w2 * g * g;
      pm[i + l] = mm[l];
      pv[i + l] = vv[l];
    }
    sqrt16(vv, sv);
#pragma omp simd
    for (int l = 0; l < 16; ++l) pp[i + l] = adamw_param(pp[i + l], mm[l], sv[l], k);
  }
  for (; i < n; ++i) {
    const float g = pg[i];
    const float mi = pm[i] + k.w1 * (g - pm[i]);
    const float vi = pv[i] * k.b2 + k.w2 * g * g;
    pm[i] = mi;
    pv[i] = vi;
    pp[i] = adamw_param(pp[i], mi, std::sqrt(vi), k);
  }
}

}  // namespace

void CpuBackend::adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                              const AdamWOptions& opt) {
  checks::check_adamw(Device::cpu(), param, grad, m, v, opt);
  const AdamWScalars k = adamw_scalars(opt);

  float* pp = param.data<float>();
  const float* pg = grad.data<const float>();
  float* pm = m.data<float>();
  float* pv = v.data<float>();
  const int64_t n = param.numel();
#pragma omp parallel if (n >= cpu::kParallelMin)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (n + nt - 1) / nt;
    chunk = (chunk + 15) / 16 * 16;
    const int64_t lo = std::min(n, t * chunk), hi = std::min(n, lo + chunk);
    adamw_range(pp + lo, pg + lo, pm + lo, pv + lo, hi - lo, k);
  }
}

double CpuBackend::sum_squares(const Tensor& x) {
  cpu::check_tensor("sum_squares", "x", x);
  const float* px = x.data<const float>();
  const int64_t n = x.numel();
  double acc = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : acc) if (n >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const double xi = px[i];
    acc += xi * xi;
  }
  return acc;
}

namespace {
double& accumulator(const char* op, Tensor& acc) {
  cpu::check_tensor(op, "acc", acc, DType::kF64);
  PENG_CHECK(acc.numel() == 1, op, ": acc must hold one value, got ", acc.str());
  return acc.data<double>()[0];
}
}  // namespace

void CpuBackend::sum_squares_into(const Tensor& x, Tensor& acc) {
  accumulator("sum_squares_into", acc) += sum_squares(x);
}

void CpuBackend::sum_into(const Tensor& x, Tensor& acc) {
  double& out = accumulator("sum_into", acc);
  cpu::check_tensor("sum_into", "x", x);
  const float* px = x.data<const float>();
  const int64_t n = x.numel();
  double sum = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum) if (n >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) sum += double(px[i]);
  out += sum;
}

}  // namespace peng
