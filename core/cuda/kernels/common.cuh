// What every kernel header shares: element types, warp and block reductions, grid sizes.
//
// Kernel headers (kernels/*.cuh) hold peng's own kernels and their host-side drivers. They
// are plain CUDA compiled by nvcc for the CUDA backend (ops/*.cu) and, unchanged, by g++
// under the test-only emulation of the CUDA execution model (tests/cuda_emu/emu.h, included
// first), so CI checks every kernel body on the CPU. The rules that keep both working:
//   - a driver is `template <class Launch> void op(Launch& launch, ...)`; it queues kernels
//     with `launch(grid, block, kernel, args...)` and takes temporary device memory with
//     `launch.scratch<T>(n)` (ops/*.cu pass a CudaLaunch, tests an emu::Launch);
//   - static __shared__ arrays only (no dynamic shared memory); blocks are whole warps;
//   - every __global__ function is a template (headers are included by several .cu files);
//   - device functions from this header and CUDA's math (expf, logf, sqrtf, rsqrtf, tanhf,
//     fmaxf, ...); no floating-point atomics (results must not depend on scheduling).
// Element types: `float` (fp32 mode) and `__nv_bfloat16` (bf16 mode); arithmetic and every
// reduction run in f32 (sums over rows of parameters' gradients in f32 too).
#pragma once

#if !defined(__CUDACC__) && !defined(PENG_CUDA_EMULATION)
#error "kernel headers compile under nvcc or under the test emulation (tests/cuda_emu/emu.h)"
#endif

#include <cuda_bf16.h>

#include <cstdint>

namespace peng::cuda::kernels {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

// ---- element conversions ----
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);  // round to nearest even
}

// ---- reductions: every lane (thread) gets the result; the order is fixed ----
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, blockDim.y = blockDim.z = 1); every thread
// of the block must call it. Ends with a barrier, so it can be called again at once.
template <class F>
__device__ __forceinline__ F block_sum(F v) {
  __shared__ F partial[kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : F(0);
  v = warp_sum(v);
  __syncthreads();
  return v;
}

__device__ __forceinline__ float block_max(float v) {
  __shared__ float partial[kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = warp_max(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : -INFINITY;
  v = warp_max(v);
  __syncthreads();
  return v;
}

// Column sums of a (rows, cols) f32 matrix of per-block partials into out (cols) +=, one
// thread per column, rows in order: the deterministic second pass of parameter-gradient
// reductions.
template <class F = float>
__global__ void add_column_sums_kernel(const F* partial, int rows, int cols, F* out) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  F s = 0;
  for (int r = 0; r < rows; ++r) s += partial[int64_t(r) * cols + j];
  out[j] += s;
}

template <class Launch>
void add_column_sums(Launch& launch, const float* partial, int rows, int cols, float* out) {
  launch(dim3(ceil_div(cols, 256)), dim3(256), add_column_sums_kernel<float>, partial, rows, cols,
         out);
}

}  // namespace peng::cuda::kernels
