// RMSNorm over the last dimension, forward and backward (Llama / Qwen's norm).
//
// Layout: x, y, dy, dx (N, C) row-major, T elements; w (C) T; rstd (N) f32; dw (C) f32
// (the parameter gradient accumulates in f32 whatever T is).
// Forward: one block of 256 threads per row; each thread strides over the row's columns and
// sums x^2, one block_sum; rstd = 1 / sqrt(sum * (1/C) + eps), y = x * rstd * w. No mean is
// subtracted, no bias (core/cpu/rmsnorm.cc, the same expression order).
// Backward, with xhat = x * rstd and g = w * dy (d rstd / dx_j = -x_j rstd^3 / C):
//   dx += rstd * (g - xhat * mean(g * xhat))   (added into: residual stream)
//   dw += sum_rows dy * xhat
// mean(g * xhat) = rstd / C * sum_j w_j dy_j x_j, one block_sum per row. Rows are split over
// a grid of at most kRmsNormRowBlocks blocks (block k: rows k, k + gridDim.x, ...); each
// thread owns its columns, so block k accumulates its partial dw in row k of a scratch
// matrix without races; add_column_sums adds the rows in order (deterministic).
#pragma once

#include "peng/core/cuda/kernels/common.cuh"

namespace peng::cuda::kernels {

constexpr int kRmsNormThreads = 256;
constexpr int kRmsNormRowBlocks = 128;  // blocks of the backward pass (rows of its partials)

// One block per row: x (N, C) -> y (N, C), rstd (N).
template <class T>
__global__ void rmsnorm_forward_kernel(const T* x, const T* w, float eps, int C, T* y,
                                       float* rstd) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * C;  // (C)
  T* yr = y + row * C;        // (C)
  float sq = 0.0f;
  for (int j = threadIdx.x; j < C; j += blockDim.x) {
    const float v = to_float(xr[j]);
    sq += v * v;
  }
  const float rs = 1.0f / sqrtf(block_sum(sq) * (1.0f / float(C)) + eps);
  for (int j = threadIdx.x; j < C; j += blockDim.x) {
    yr[j] = from_float<T>(to_float(xr[j]) * rs * to_float(w[j]));
  }
  if (threadIdx.x == 0) rstd[row] = rs;
}

// x (N, C), w (C) -> y (N, C), rstd (N).
template <class Launch, class T>
void rmsnorm_forward(Launch& launch, const T* x, const T* w, float eps, int64_t N, int C, T* y,
                     float* rstd) {
  launch(dim3(unsigned(N)), dim3(kRmsNormThreads), rmsnorm_forward_kernel<T>, x, w, eps, C, y,
         rstd);
}

// Block k handles rows k, k + gridDim.x, ...; partial_dw (gridDim.x, C).
template <class T>
__global__ void rmsnorm_backward_kernel(const T* dy, const T* x, const T* w, const float* rstd,
                                        int64_t N, int C, T* dx, float* partial_dw) {
  float* pdw = partial_dw + int64_t(blockIdx.x) * C;  // (C)
  const float inv_c = 1.0f / float(C);
  for (int j = threadIdx.x; j < C; j += blockDim.x) pdw[j] = 0.0f;
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const T* dyr = dy + row * C;  // (C)
    const T* xr = x + row * C;    // (C)
    T* dxr = dx + row * C;        // (C)
    const float rs = rstd[row];
    float gx = 0.0f;
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
      gx += to_float(w[j]) * to_float(dyr[j]) * to_float(xr[j]);
    }
    const float gx_mean = block_sum(gx) * rs * inv_c;    // mean(g * xhat)
    for (int j = threadIdx.x; j < C; j += blockDim.x) {  // each thread owns its columns
      const float d = to_float(dyr[j]);
      const float xhat = to_float(xr[j]) * rs;
      pdw[j] += d * xhat;
      dxr[j] = from_float<T>(to_float(dxr[j]) + rs * (to_float(w[j]) * d - xhat * gx_mean));
    }
  }
}

// dy, x (N, C), w (C), rstd (N) -> dx (N, C) +=, dw (C) +=.
template <class Launch, class T>
void rmsnorm_backward(Launch& launch, const T* dy, const T* x, const T* w, const float* rstd,
                      int64_t N, int C, T* dx, float* dw) {
  const int blocks = int(N < kRmsNormRowBlocks ? N : kRmsNormRowBlocks);
  if (blocks == 0) return;
  float* partial_dw = launch.template scratch<float>(size_t(blocks) * C);
  launch(dim3(unsigned(blocks)), dim3(kRmsNormThreads), rmsnorm_backward_kernel<T>, dy, x, w, rstd,
         N, C, dx, partial_dw);
  add_column_sums(launch, partial_dw, blocks, C, dw);
}

}  // namespace peng::cuda::kernels
