// SwiGLU, forward and backward (the Llama / Qwen MLP activation).
//
// Layout: gate_up (N, 2F) row-major = [gate | up] (the fused gate and up projections),
// out, dout (N, F), dgate_up (N, 2F) = [dgate | dup]; T elements.
// Grid (ceil(F / 256), min(N, max_row_blocks)): thread x of block (bx, by) handles column
// j = bx * 256 + x of rows by, by + gridDim.y, ... (coalesced along the row, no index
// division).
// With e = exp(-g), s = sigmoid(g) = 1 / (1 + e), silu(g) = g s:
//   out   = silu(g) * u
//   dgate = dout * u * silu'(g),  silu'(g) = s + g s (1 - s) = s (1 + g e s)
//   dup   = dout * silu(g)
// 1 - s = e s is formed without cancellation (core/cpu/swiglu.cc). For g < -87, s is taken as
// 0 and so is silu'(g) (what the CPU backend gives; f32 exp(-g) overflows to inf just
// beyond, so e s is never formed there); for g > 87, expf(-g) is ~0 and s = 1. f32
// arithmetic, expf.
#pragma once

#include "peng/core/cuda/kernels/elementwise.cuh"

namespace peng::cuda::kernels {

constexpr float kSwigluTail = 87.0f;    // g below -kSwigluTail: sigmoid(g) is taken as 0
constexpr int kSwigluRowBlocks = 1024;  // the grid's rows (each block strides over rows)

// sigmoid(g) given e = exp(-g).
__device__ __forceinline__ float swiglu_sigmoid(float g, float e) {
  return g < -kSwigluTail ? 0.0f : 1.0f / (1.0f + e);
}

inline dim3 swiglu_grid(int64_t N, int64_t F, int max_row_blocks) {
  return dim3(ceil_div(F, kPointwiseThreads), unsigned(N < max_row_blocks ? N : max_row_blocks));
}

template <class T>
__global__ void swiglu_forward_kernel(const T* gate_up, int64_t N, int64_t F, T* out) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= F) return;
  for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
    const float g = to_float(gate_up[i * 2 * F + j]);
    const float u = to_float(gate_up[i * 2 * F + F + j]);
    out[i * F + j] = from_float<T>(g * swiglu_sigmoid(g, expf(-g)) * u);
  }
}

// gate_up (N, 2F) -> out (N, F). max_row_blocks caps the grid's rows (tests lower it to
// exercise the row loop).
template <class Launch, class T>
void swiglu_forward(Launch& launch, const T* gate_up, int64_t N, int64_t F, T* out,
                    int max_row_blocks = kSwigluRowBlocks) {
  launch(swiglu_grid(N, F, max_row_blocks), dim3(kPointwiseThreads), swiglu_forward_kernel<T>,
         gate_up, N, F, out);
}

template <class T>
__global__ void swiglu_backward_kernel(const T* dout, const T* gate_up, int64_t N, int64_t F,
                                       T* dgate_up) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= F) return;
  for (int64_t i = blockIdx.y; i < N; i += gridDim.y) {
    const float g = to_float(gate_up[i * 2 * F + j]);
    const float u = to_float(gate_up[i * 2 * F + F + j]);
    const float d = to_float(dout[i * F + j]);
    const float e = expf(-g);  // inf for g < -88.7: the tail must not form e * s
    const float s = swiglu_sigmoid(g, e);
    const float dsilu = g < -kSwigluTail ? 0.0f : s * (1.0f + g * (e * s));
    dgate_up[i * 2 * F + j] = from_float<T>(d * u * dsilu);
    dgate_up[i * 2 * F + F + j] = from_float<T>(d * (g * s));
  }
}

// dout (N, F), gate_up (N, 2F) -> dgate_up (N, 2F) overwritten.
template <class Launch, class T>
void swiglu_backward(Launch& launch, const T* dout, const T* gate_up, int64_t N, int64_t F,
                     T* dgate_up, int max_row_blocks = kSwigluRowBlocks) {
  launch(swiglu_grid(N, F, max_row_blocks), dim3(kPointwiseThreads), swiglu_backward_kernel<T>,
         dout, gate_up, N, F, dgate_up);
}

}  // namespace peng::cuda::kernels
