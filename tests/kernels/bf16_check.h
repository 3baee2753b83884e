// bf16 helpers of the kernel tests (tests/kernels only: they need cuda_bf16.h, which the CUDA
// emulation, tests/cuda_emu/emu.h, includes; kernel_check.h stays plain C++ for tests/gpu).
#pragma once

#include <cstdint>
#include <vector>

#include "tests/cuda_emu/emu.h"
#include "tests/kernels/kernel_check.h"

namespace peng::kernel_test {

// t's f32 values rounded to bf16.
inline std::vector<__nv_bfloat16> to_bf16(const Tensor& t) {
  std::vector<__nv_bfloat16> v(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[size_t(i)] = __float2bfloat16(t.data<float>()[i]);
  return v;
}

// A CPU f32 tensor of `shape` holding v's bf16 values exactly.
inline Tensor from_bf16(const std::vector<__nv_bfloat16>& v, const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = __bfloat162float(v[size_t(i)]);
  return t;
}

}  // namespace peng::kernel_test
