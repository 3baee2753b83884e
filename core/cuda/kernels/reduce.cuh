// Whole-tensor sums in double on the device, deterministic: the sum of squares of the global
// gradient norm (sum_squares_into) and the sum of per-row losses (sum_into), added into a
// one-element f64 accumulator that stays on the device, so a step reads one value at its
// end instead of waiting once per tensor.
//
// Layout: x (n) T; partial (G) f64 scratch; acc (1) f64.
// Pass 1: G = min(ceil(n / 256), 1024) blocks of 256 threads; thread i of the grid adds
// x[i], x[i + 256 G], ... (squared when asked) in double, then block_sum (a fixed shuffle
// tree) gives block k's partial[k]. Pass 2: one block of 256 threads; thread j adds
// partial[j], partial[j + 256], ... in order, block_sum, and thread 0 adds the total into
// acc (or stores it: `accumulate` false). G and every order depend on n only, so two runs
// on the same data are bit-identical; no atomics.
#pragma once

#include "peng/core/cuda/kernels/common.cuh"

namespace peng::cuda::kernels {

constexpr int kReduceThreads = 256;
constexpr int kReduceBlocks = 1024;  // most blocks of pass 1 (the number of partials)

// The number of pass-1 blocks for n elements (0 for an empty x).
inline int reduce_blocks(int64_t n) {
  const int64_t blocks = (n + kReduceThreads - 1) / kReduceThreads;
  return int(blocks < kReduceBlocks ? blocks : kReduceBlocks);
}

template <bool kSquare, class T>
__global__ void reduce_partials_kernel(const T* x, int64_t n, double* partial) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double s = 0.0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double xi = to_float(x[i]);
    s += kSquare ? xi * xi : xi;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

template <class F = double>
__global__ void reduce_finish_kernel(const F* partial, int blocks, bool accumulate, F* acc) {
  F s = 0.0;
  for (int j = threadIdx.x; j < blocks; j += blockDim.x) s += partial[j];
  s = block_sum(s);
  if (threadIdx.x == 0) acc[0] = accumulate ? acc[0] + s : s;
}

// acc[0] += (accumulate) or = (not) the sum of x[i]^2 (kSquare) or of x[i] over [0, n).
template <bool kSquare, class Launch, class T>
void reduce_into(Launch& launch, const T* x, int64_t n, double* acc, bool accumulate) {
  const int blocks = reduce_blocks(n);
  double* partial = launch.template scratch<double>(size_t(blocks));
  launch(dim3(unsigned(blocks)), dim3(kReduceThreads), reduce_partials_kernel<kSquare, T>, x, n,
         partial);
  launch(dim3(1), dim3(kReduceThreads), reduce_finish_kernel<double>, partial, blocks, accumulate,
         acc);
}

// acc (1) f64 += sum of squares of x (n).
template <class Launch, class T>
void sum_squares_into(Launch& launch, const T* x, int64_t n, double* acc) {
  reduce_into<true>(launch, x, n, acc, /*accumulate=*/true);
}

// acc (1) f64 = sum of squares of x (n) (overwritten: sum_squares' fresh scratch).
template <class Launch, class T>
void sum_squares(Launch& launch, const T* x, int64_t n, double* acc) {
  reduce_into<true>(launch, x, n, acc, /*accumulate=*/false);
}

// acc (1) f64 += sum of x (n).
template <class Launch, class T>
void sum_into(Launch& launch, const T* x, int64_t n, double* acc) {
  reduce_into<false>(launch, x, n, acc, /*accumulate=*/true);
}

}  // namespace peng::cuda::kernels
