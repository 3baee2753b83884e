// The matmul family's own kernels (the products themselves are cuBLASLt's, ops/matmul.cu):
// the bias gradient of linear_backward and the fill of a product with an empty inner
// dimension.
//
// Bias gradient: dbias (C) f32 += column sums of dy (N, C) row-major, T elements.
// A block of 256 threads covers 32 columns (lane = column) with 8 row lanes (warp = row
// lane); block (x, y) of a grid (ceil(C / 32), R) sums rows y*8 + w, y*8 + w + 8R, ... of
// its columns, the 8 row lanes are added in order through shared memory, and row y of a
// scratch (R, C) gets the block's partial sums; add_column_sums adds the R rows in order.
// Every sum runs in a fixed order: deterministic (no atomics).
// Fill: c (rows, cols) = row (broadcast; 0 when null) + beta * c (c not read when beta = 0),
// for a product whose inner dimension k is 0 (cuBLASLt is not called then).
#pragma once

#include "peng/core/cuda/kernels/common.cuh"

namespace peng::cuda::kernels {

constexpr int kBiasGradThreads = 256;
constexpr int kBiasGradRowLanes = kBiasGradThreads / kWarp;  // 8
constexpr int kBiasGradRowBlocks = 64;  // grid rows R at most (rows of the partials)

// dy (N, C) -> partial (gridDim.y, C): block (x, y)'s column sums of its rows.
template <class T>
__global__ void bias_grad_partial_kernel(const T* dy, int64_t N, int C, float* partial) {
  __shared__ float lanes[kBiasGradRowLanes][kWarp];
  const int lane = threadIdx.x % kWarp, r = threadIdx.x / kWarp;
  const int col = blockIdx.x * kWarp + lane;
  float s = 0.0f;
  if (col < C) {
    const int64_t step = int64_t(gridDim.y) * kBiasGradRowLanes;
    for (int64_t row = int64_t(blockIdx.y) * kBiasGradRowLanes + r; row < N; row += step) {
      s += to_float(dy[row * C + col]);
    }
  }
  lanes[r][lane] = s;
  __syncthreads();
  if (r == 0 && col < C) {
    float total = 0.0f;
    for (int i = 0; i < kBiasGradRowLanes; ++i) total += lanes[i][lane];
    partial[int64_t(blockIdx.y) * C + col] = total;
  }
}

// dy (N, C) -> dbias (C) += the column sums of dy.
template <class Launch, class T>
void bias_grad(Launch& launch, const T* dy, int64_t N, int C, float* dbias) {
  if (N == 0 || C == 0) return;
  const int64_t lane_rows = (N + kBiasGradRowLanes - 1) / kBiasGradRowLanes;
  const int row_blocks = int(lane_rows < kBiasGradRowBlocks ? lane_rows : kBiasGradRowBlocks);
  float* partial = launch.template scratch<float>(size_t(row_blocks) * C);
  launch(dim3(ceil_div(C, kWarp), unsigned(row_blocks)), dim3(kBiasGradThreads),
         bias_grad_partial_kernel<T>, dy, N, C, partial);
  add_column_sums(launch, partial, row_blocks, C, dbias);
}

// c (rows, cols) = row[j] (0 when row is null) + beta * c[i, j]; c is not read when beta = 0.
template <class T>
__global__ void fill_rows_kernel(T* c, int64_t rows, int64_t cols, const T* row, float beta) {
  const int64_t n = rows * cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float v = row ? to_float(row[i % cols]) : 0.0f;
    if (beta != 0.0f) v += beta * to_float(c[i]);
    c[i] = from_float<T>(v);
  }
}

template <class Launch, class T>
void fill_rows(Launch& launch, T* c, int64_t rows, int64_t cols, const T* row, float beta) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  const int64_t blocks = (n + 255) / 256;
  launch(dim3(unsigned(blocks < 4096 ? blocks : 4096)), dim3(256), fill_rows_kernel<T>, c, rows,
         cols, row, beta);
}

}  // namespace peng::cuda::kernels
