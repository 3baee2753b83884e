// GELU (tanh approximation), forward and backward, elementwise over any shape.
//
// With u = sqrt(2/pi) (x + 0.044715 x^3) and s = sigmoid(2u) = 1 / (1 + exp(-2u)):
//   gelu(x)  = 0.5 x (1 + tanh u) = x * s
//   gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u'
//            = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  with 1 - s = exp(-2u) s.
// The sigmoid form has no cancellation (unlike 1 + tanh u for x << 0) and vectorises with
// cpu::fast_exp (~2 ulp, argument clamped so exp never overflows), so the result is within a
// few ulp of the exact formula. For |u| > 43 (|x| > ~9.9) s is exactly 0 or 1 in f32, and
// the tails are written as such (gelu = 0 or x, gelu' = 0 or 1), as PyTorch's tanh form
// gives. Loops are `omp parallel for simd` over the flat array.
#include "peng/core/cpu/cpu_backend.h"

namespace peng {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoeff = 0.044715f;
constexpr float kTail = 43.0f;  // |u| beyond which sigmoid(2u) is 0 or 1 in f32

}  // namespace

void CpuBackend::gelu_forward(const Tensor& x, Tensor& y) {
  const char* op = "gelu_forward";
  cpu::check_tensor(op, "x", x);
  cpu::check_shape(op, "y", y, x.shape());
  const float* px = x.data<const float>();
  float* py = y.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    float xi = px[i];
    float u = kSqrt2OverPi * (xi + kGeluCoeff * xi * xi * xi);
    // Beyond |u| = 43, s is 1 or 0 to f32 precision (as tanh u is +-1); the clamped exp
    // would leave x / 6e37 there, far from 0 for huge negative x.
    py[i] = u < -kTail ? 0.0f : xi / (1.0f + cpu::fast_exp(-2.0f * u));
  }
}

void CpuBackend::gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) {
  const char* op = "gelu_backward";
  cpu::check_tensor(op, "x", x);
  cpu::check_shape(op, "dy", dy, x.shape());
  cpu::check_shape(op, "dx", dx, x.shape());
  const float* px = x.data<const float>();
  const float* pdy = dy.data<const float>();  // may alias dx
  float* pdx = dx.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    float xi = px[i];
    float x2 = xi * xi;
    float u = kSqrt2OverPi * (xi + kGeluCoeff * x2 * xi);
    float e = cpu::fast_exp(-2.0f * u);
    float s = 1.0f / (1.0f + e);
    float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCoeff * x2);
    // Tails |u| > 43: gelu' is 1 or 0 to f32 precision; the clamped exp (and x^3, for huge x)
    // would make the formula garbage there.
    float grad = u > kTail ? 1.0f : (u < -kTail ? 0.0f : s + 2.0f * xi * s * (e * s) * du);
    pdx[i] = pdy[i] * grad;
  }
}

}  // namespace peng
