// Elementwise ops on flat arrays of any shape: add and scale, and the grid-stride loop every
// pointwise kernel (gelu.cuh, swiglu.cuh, rope.cuh, cast.cuh) shares.
//
// Layout: a, b, out, x are n contiguous T elements (the shape does not matter).
// Each thread handles elements i, i + stride, ... with stride = gridDim.x * blockDim.x over a
// grid of at most kPointwiseMaxBlocks blocks of 256 threads (consecutive threads touch
// consecutive elements: coalesced). Arithmetic in f32:
//   add:   out = a + b   (out may alias a or b: each element is read before it is written,
//                         at the same index, by the same thread)
//   scale: x *= s
#pragma once

#include "peng/core/cuda/kernels/common.cuh"

namespace peng::cuda::kernels {

constexpr int kPointwiseThreads = 256;
// Enough blocks to fill an H200 (132 SMs x 8 blocks of 256) several times over; beyond it the
// grid-stride loop takes over.
constexpr int kPointwiseMaxBlocks = 8192;

// Blocks of a pointwise launch over n elements (0 for n = 0: the launch is skipped).
inline unsigned pointwise_blocks(int64_t n, int max_blocks) {
  const int64_t need = (n + kPointwiseThreads - 1) / kPointwiseThreads;
  return unsigned(need < max_blocks ? need : max_blocks);
}

// The first element and the stride of the grid-stride loop of the calling thread.
__device__ __forceinline__ int64_t grid_first() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return int64_t(gridDim.x) * blockDim.x; }

template <class T>
__global__ void add_kernel(const T* a, const T* b, int64_t n, T* out) {
  for (int64_t i = grid_first(); i < n; i += grid_stride()) {
    out[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
  }
}

// a, b (n) -> out (n) = a + b; out may alias a or b. max_blocks caps the grid (tests lower
// it to exercise the grid-stride loop).
template <class Launch, class T>
void add(Launch& launch, const T* a, const T* b, int64_t n, T* out,
         int max_blocks = kPointwiseMaxBlocks) {
  launch(dim3(pointwise_blocks(n, max_blocks)), dim3(kPointwiseThreads), add_kernel<T>, a, b, n,
         out);
}

template <class T>
__global__ void scale_kernel(T* x, int64_t n, float s) {
  for (int64_t i = grid_first(); i < n; i += grid_stride())
    x[i] = from_float<T>(to_float(x[i]) * s);
}

// x (n) *= s.
template <class Launch, class T>
void scale(Launch& launch, T* x, int64_t n, float s, int max_blocks = kPointwiseMaxBlocks) {
  launch(dim3(pointwise_blocks(n, max_blocks)), dim3(kPointwiseThreads), scale_kernel<T>, x, n, s);
}

}  // namespace peng::cuda::kernels
