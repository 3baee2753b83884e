// GELU (tanh approximation), forward and backward, elementwise over any shape.
//
// Layout: x, y, dy, dx are n contiguous T elements; one grid-stride loop (elementwise.cuh).
// With u = sqrt(2/pi) (x + 0.044715 x^3) and s = sigmoid(2u) = 1 / (1 + exp(-2u)):
//   gelu(x)  = 0.5 x (1 + tanh u) = x * s
//   gelu'(x) = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  1 - s = exp(-2u) s
// (core/cpu/gelu.cc: the sigmoid form has no cancellation for x << 0). For |u| > 43 s is
// exactly 0 or 1 in f32 and the tails are written as such (gelu = 0 or x, gelu' = 0 or 1),
// as the CPU backend and PyTorch's tanh form give. f32 arithmetic, expf.
// Backward: dx = dy * gelu'(x); dx may alias dy (read before written, same index, same
// thread).
#pragma once

#include "peng/core/cuda/kernels/elementwise.cuh"

namespace peng::cuda::kernels {

constexpr float kGeluSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoeff = 0.044715f;
constexpr float kGeluTail = 43.0f;  // |u| beyond which sigmoid(2u) is 0 or 1 in f32

__device__ __forceinline__ float gelu_value(float x) {
  const float u = kGeluSqrt2OverPi * (x + kGeluCoeff * x * x * x);
  return u < -kGeluTail ? 0.0f : x / (1.0f + expf(-2.0f * u));
}

__device__ __forceinline__ float gelu_grad(float x) {
  const float x2 = x * x;
  const float u = kGeluSqrt2OverPi * (x + kGeluCoeff * x2 * x);
  if (u > kGeluTail) return 1.0f;
  if (u < -kGeluTail) return 0.0f;
  const float e = expf(-2.0f * u);  // finite: -2u < 86
  const float s = 1.0f / (1.0f + e);
  const float du = kGeluSqrt2OverPi * (1.0f + 3.0f * kGeluCoeff * x2);
  return s + 2.0f * x * s * (e * s) * du;
}

template <class T>
__global__ void gelu_forward_kernel(const T* x, int64_t n, T* y) {
  for (int64_t i = grid_first(); i < n; i += grid_stride()) {
    y[i] = from_float<T>(gelu_value(to_float(x[i])));
  }
}

// x (n) -> y (n) = gelu(x).
template <class Launch, class T>
void gelu_forward(Launch& launch, const T* x, int64_t n, T* y,
                  int max_blocks = kPointwiseMaxBlocks) {
  launch(dim3(pointwise_blocks(n, max_blocks)), dim3(kPointwiseThreads), gelu_forward_kernel<T>, x,
         n, y);
}

template <class T>
__global__ void gelu_backward_kernel(const T* dy, const T* x, int64_t n, T* dx) {
  for (int64_t i = grid_first(); i < n; i += grid_stride()) {
    dx[i] = from_float<T>(to_float(dy[i]) * gelu_grad(to_float(x[i])));
  }
}

// dy, x (n) -> dx (n) = dy * gelu'(x), overwritten; dx may alias dy.
template <class Launch, class T>
void gelu_backward(Launch& launch, const T* dy, const T* x, int64_t n, T* dx,
                   int max_blocks = kPointwiseMaxBlocks) {
  launch(dim3(pointwise_blocks(n, max_blocks)), dim3(kPointwiseThreads), gelu_backward_kernel<T>,
         dy, x, n, dx);
}

}  // namespace peng::cuda::kernels
