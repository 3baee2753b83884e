// Elementwise ops on flat arrays of any shape: add and scale (f32), cast (f32 <-> bf16).
// One `omp parallel for simd` loop each; out may alias a or b (each element is read before
// it is written, at the same index).
#include "peng/core/cpu/cpu_backend.h"

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

// The conversions of core/dtype.h, elementwise.
void CpuBackend::cast(const Tensor& x, Tensor& y) {
  const bool narrow = x.dtype() == DType::kF32;
  const DType to = narrow ? DType::kBF16 : DType::kF32;
  cpu::check_tensor("cast", "x", x, narrow ? DType::kF32 : DType::kBF16);
  cpu::check_shape("cast", "y", y, x.shape(), to);
  const int64_t n = x.numel();
  if (narrow) {
    const float* px = x.data<const float>();
    uint16_t* py = static_cast<uint16_t*>(y.raw_data());
#pragma omp parallel for simd schedule(static) if (n >= cpu::kParallelMin)
    for (int64_t i = 0; i < n; ++i) py[i] = f32_to_bf16(px[i]);
    return;
  }
  const uint16_t* px = static_cast<const uint16_t*>(x.raw_data());
  float* py = y.data<float>();
#pragma omp parallel for simd schedule(static) if (n >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) py[i] = bf16_to_f32(px[i]);
}

void CpuBackend::scale(Tensor& x, float s) {
  cpu::check_tensor("scale", "x", x);
  float* px = x.data<float>();
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n >= cpu::kParallelMin)
  for (int64_t i = 0; i < n; ++i) px[i] *= s;
}

}  // namespace peng
