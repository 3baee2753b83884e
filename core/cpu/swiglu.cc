// SwiGLU, forward and backward (the Llama / Qwen MLP activation), on the CPU.
//
// Layout: gate_up (N, 2F) row-major = [gate | up] (the fused gate and up projections),
// out and dout (N, F), dgate_up (N, 2F) = [dgate | dup]. Rows are spread over OpenMP threads,
// the F columns of a row are one `omp simd` loop.
// With s = sigmoid(g) = 1 / (1 + exp(-g)) and silu(g) = g s:
//   out   = silu(g) * u
//   dgate = dout * u * silu'(g),  silu'(g) = s + g s (1 - s) = s (1 + g e s)
//   dup   = dout * silu(g)
// with e = exp(-g), so 1 - s = e s is formed without cancellation (as in gelu.cc).
// exp is cpu::fast_exp (Cephes polynomial, ~2 ulp relative: below the f32 rounding of the
// products around it; std::exp does not vectorise without -ffast-math). Its argument clamp
// at -g > 87 would leave s = exp(-87) instead of ~0 for very negative g, so s is set to 0
// there (exactly what f32 gives: exp(-g) overflows to inf beyond -g = 88.7); for g > 87,
// s = 1 to f32 precision, which the clamped exp already gives.
#include "peng/core/cpu/cpu_backend.h"

namespace peng {
namespace {

constexpr float kTail = 87.0f;  // g below -kTail: sigmoid(g) is taken as 0

// sigmoid(g) given e = exp(-g) (clamped by fast_exp).
inline float sigmoid(float g, float e) { return g < -kTail ? 0.0f : 1.0f / (1.0f + e); }

// Checks gate_up (N, 2F); returns N and F.
struct GluDims {
  int64_t n, f;
};
GluDims check_gate_up(const char* op, const Tensor& gate_up) {
  cpu::check_tensor(op, "gate_up", gate_up);
  PENG_CHECK(gate_up.ndim() >= 1 && gate_up.dim(-1) % 2 == 0, op,
             ": gate_up must be (N, 2F) = [gate | up], got ", gate_up.str());
  return {cpu::rows_of(gate_up), gate_up.dim(-1) / 2};
}

// gate_up's shape with the last dimension F.
Shape half_shape(const Tensor& gate_up, int64_t f) {
  Shape s = gate_up.shape();
  s.back() = f;
  return s;
}

}  // namespace

void CpuBackend::swiglu_forward(const Tensor& gate_up, Tensor& out) {
  const char* op = "swiglu_forward";
  const auto [n, f] = check_gate_up(op, gate_up);
  cpu::check_shape(op, "out", out, half_shape(gate_up, f));
  cpu::check_no_overlap(op, "out", out, "gate_up", gate_up);

  const float* pgu = gate_up.data<const float>();
  float* pout = out.data<float>();
#pragma omp parallel for schedule(static) if (n * f >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* g = pgu + i * 2 * f;  // (F)
    const float* u = g + f;            // (F)
    float* o = pout + i * f;           // (F)
#pragma omp simd
    for (int64_t j = 0; j < f; ++j) o[j] = g[j] * sigmoid(g[j], cpu::fast_exp(-g[j])) * u[j];
  }
}

void CpuBackend::swiglu_backward(const Tensor& dout, const Tensor& gate_up, Tensor& dgate_up) {
  const char* op = "swiglu_backward";
  const auto [n, f] = check_gate_up(op, gate_up);
  cpu::check_shape(op, "dout", dout, half_shape(gate_up, f));
  cpu::check_shape(op, "dgate_up", dgate_up, gate_up.shape());
  cpu::check_no_overlap(op, "dgate_up", dgate_up, "dout", dout);
  cpu::check_no_overlap(op, "dgate_up", dgate_up, "gate_up", gate_up);

  const float* pgu = gate_up.data<const float>();
  const float* pdout = dout.data<const float>();
  float* pdgu = dgate_up.data<float>();
#pragma omp parallel for schedule(static) if (n * f >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* g = pgu + i * 2 * f;  // (F)
    const float* u = g + f;            // (F)
    const float* d = pdout + i * f;    // (F)
    float* dg = pdgu + i * 2 * f;      // (F)
    float* du = dg + f;                // (F)
#pragma omp simd
    for (int64_t j = 0; j < f; ++j) {
      const float gj = g[j], dj = d[j];
      const float e = cpu::fast_exp(-gj);
      const float s = sigmoid(gj, e);  // 0 in the far negative tail, and so is silu'
      dg[j] = dj * u[j] * (s * (1.0f + gj * (e * s)));
      du[j] = dj * (gj * s);
    }
  }
}

}  // namespace peng
