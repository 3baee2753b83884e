// The bf16 <-> f32 casts of the bf16 mode (fp32 master weights -> bf16 compute copies, bf16
// activations and gradients -> f32), elementwise over any shape.
//
// Layout: x, y are n contiguous elements; one grid-stride loop (elementwise.cuh).
// f32 -> bf16: round to nearest even on the bits, NaN stays NaN (quiet bit set, sign and the
// payload's top bits kept): bit for bit core/dtype.h's f32_to_bf16, which the checkpoint and
// export code uses, so a cast on the GPU gives the bytes a cast on the CPU gives. (CUDA's
// __float2bfloat16 returns one canonical NaN instead.) Overflow rounds to +-inf; subnormals
// round like any other value.
// bf16 -> f32: exact (the 16 bits become the high half of the f32).
#pragma once

#include <cstring>

#include "peng/core/cuda/kernels/elementwise.cuh"

namespace peng::cuda::kernels {

__device__ __forceinline__ __nv_bfloat16 bf16_from_f32(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) {  // NaN: stays NaN
    return __ushort_as_bfloat16((unsigned short)((u >> 16) | 0x40u));
  }
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return __ushort_as_bfloat16((unsigned short)(u >> 16));
}

__device__ __forceinline__ float f32_from_bf16(__nv_bfloat16 x) {
  const uint32_t u = uint32_t(__bfloat16_as_ushort(x)) << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

// Every __global__ is a template (common.cuh); F is float.
template <class F>
__global__ void cast_f32_to_bf16_kernel(const F* x, int64_t n, __nv_bfloat16* y) {
  for (int64_t i = grid_first(); i < n; i += grid_stride()) y[i] = bf16_from_f32(x[i]);
}

template <class F>
__global__ void cast_bf16_to_f32_kernel(const __nv_bfloat16* x, int64_t n, F* y) {
  for (int64_t i = grid_first(); i < n; i += grid_stride()) y[i] = f32_from_bf16(x[i]);
}

// x (n) f32 -> y (n) bf16, round to nearest even.
template <class Launch>
void cast_f32_to_bf16(Launch& launch, const float* x, int64_t n, __nv_bfloat16* y,
                      int max_blocks = kPointwiseMaxBlocks) {
  launch(dim3(pointwise_blocks(n, max_blocks)), dim3(kPointwiseThreads),
         cast_f32_to_bf16_kernel<float>, x, n, y);
}

// x (n) bf16 -> y (n) f32, exact.
template <class Launch>
void cast_bf16_to_f32(Launch& launch, const __nv_bfloat16* x, int64_t n, float* y,
                      int max_blocks = kPointwiseMaxBlocks) {
  launch(dim3(pointwise_blocks(n, max_blocks)), dim3(kPointwiseThreads),
         cast_bf16_to_f32_kernel<float>, x, n, y);
}

}  // namespace peng::cuda::kernels
