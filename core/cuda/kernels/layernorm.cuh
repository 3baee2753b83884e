// LayerNorm over the last dimension, forward and backward.
//
// Layout: x, y, dy, dx (N, C) row-major, T elements; w, b (C) T; mean, rstd (N) f32;
// dw, db (C) f32 (gradients accumulate in f32 whatever T is).
// Forward: one block of 256 threads per row; each thread strides over the row's columns;
// two passes (mean, then the centred variance: no cancellation), each a block_sum;
// rstd = 1 / sqrt(var + eps), the biased variance (torch.nn.LayerNorm).
// Backward, with xhat = (x - mean) * rstd and g = w * dy:
//   dx += rstd * (g - mean(g) - xhat * mean(g * xhat))   (added into: residual stream)
//   dw += sum_rows dy * xhat,  db += sum_rows dy
// Rows are split over a grid of at most kRowBlocks blocks; block k writes its partial column
// sums of dw and db to row k of two scratch matrices; add_column_sums adds the rows in order
// (deterministic).
#pragma once

#include "peng/core/cuda/kernels/common.cuh"

namespace peng::cuda::kernels {

constexpr int kLayerNormThreads = 256;

template <class T>
__global__ void layernorm_forward_kernel(const T* x, const T* w, const T* b, float eps, int C, T* y,
                                         float* mean, float* rstd) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * C;
  T* yr = y + row * C;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < C; j += blockDim.x) sum += to_float(xr[j]);
  const float m = block_sum(sum) / float(C);
  float sq = 0.0f;
  for (int j = threadIdx.x; j < C; j += blockDim.x) {
    const float d = to_float(xr[j]) - m;
    sq += d * d;
  }
  const float rs = 1.0f / sqrtf(block_sum(sq) / float(C) + eps);
  for (int j = threadIdx.x; j < C; j += blockDim.x) {
    yr[j] = from_float<T>((to_float(xr[j]) - m) * rs * to_float(w[j]) + to_float(b[j]));
  }
  if (threadIdx.x == 0) {
    mean[row] = m;
    rstd[row] = rs;
  }
}

// x (N, C), w, b (C) -> y (N, C), mean, rstd (N).
template <class Launch, class T>
void layernorm_forward(Launch& launch, const T* x, const T* w, const T* b, float eps, int64_t N,
                       int C, T* y, float* mean, float* rstd) {
  launch(dim3(unsigned(N)), dim3(kLayerNormThreads), layernorm_forward_kernel<T>, x, w, b, eps, C,
         y, mean, rstd);
}

constexpr int kRowBlocks = 128;  // blocks of the backward pass (and rows of its partials)

// Block k handles rows k, k + gridDim.x, ...; partial_dw, partial_db (gridDim.x, C).
template <class T>
__global__ void layernorm_backward_kernel(const T* dy, const T* x, const T* w, const float* mean,
                                          const float* rstd, int64_t N, int C, T* dx,
                                          float* partial_dw, float* partial_db) {
  float* pdw = partial_dw + int64_t(blockIdx.x) * C;
  float* pdb = partial_db + int64_t(blockIdx.x) * C;
  for (int j = threadIdx.x; j < C; j += blockDim.x) pdw[j] = pdb[j] = 0.0f;
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const T* dyr = dy + row * C;
    const T* xr = x + row * C;
    T* dxr = dx + row * C;
    const float m = mean[row], rs = rstd[row];
    float g_sum = 0.0f, gx_sum = 0.0f;
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
      const float g = to_float(w[j]) * to_float(dyr[j]);
      g_sum += g;
      gx_sum += g * ((to_float(xr[j]) - m) * rs);
    }
    const float g_mean = block_sum(g_sum) / float(C);
    const float gx_mean = block_sum(gx_sum) / float(C);
    for (int j = threadIdx.x; j < C; j += blockDim.x) {  // each thread owns its columns
      const float d = to_float(dyr[j]);
      const float xhat = (to_float(xr[j]) - m) * rs;
      pdw[j] += d * xhat;
      pdb[j] += d;
      dxr[j] =
          from_float<T>(to_float(dxr[j]) + rs * (to_float(w[j]) * d - g_mean - xhat * gx_mean));
    }
  }
}

// dy, x (N, C), w (C), mean, rstd (N) -> dx (N, C) +=, dw, db (C) +=.
template <class Launch, class T>
void layernorm_backward(Launch& launch, const T* dy, const T* x, const T* w, const float* mean,
                        const float* rstd, int64_t N, int C, T* dx, float* dw, float* db) {
  const int blocks = int(N < kRowBlocks ? N : kRowBlocks);
  if (blocks == 0) return;
  float* partial_dw = launch.template scratch<float>(size_t(blocks) * C);
  float* partial_db = launch.template scratch<float>(size_t(blocks) * C);
  launch(dim3(unsigned(blocks)), dim3(kLayerNormThreads), layernorm_backward_kernel<T>, dy, x, w,
         mean, rstd, N, C, dx, partial_dw, partial_db);
  add_column_sums(launch, partial_dw, blocks, C, dw);
  add_column_sums(launch, partial_db, blocks, C, db);
}

}  // namespace peng::cuda::kernels
