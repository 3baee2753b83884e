// Elementwise ops on flat f32 arrays of any shape: add and scale.
// One `omp parallel for simd` loop each; out may alias a or b (each element is read before
// it is written, at the same index).
#include "core/cpu/cpu_backend.h"

namespace peng {

void CpuBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
  const char* op = "add";
  cpu::check_tensor(op, "a", a);
  cpu::check_shape(op, "b", b, a.shape());
  cpu::check_shape(op, "out", out, a.shape());
  const float* pa = a.data<const float>();
  const float* pb = b.data<const float>();
  float* po = out.data<float>();
  const int64_t n = a.numel();
#pragma omp parallel for simd schedule(static) if (n >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) po[i] = pa[i] + pb[i];
}

void CpuBackend::scale(Tensor& x, float s) {
  cpu::check_tensor("scale", "x", x);
  float* px = x.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) px[i] *= s;
}

}  // namespace peng
