// Fused softmax + cross-entropy over the first `vocab` of Vp (padded) columns, forward and
// backward; and the vocabulary-parallel form on a shard of the columns (Megatron's
// vocab-parallel cross-entropy: shard max, then shard sums with the group's max, then the
// backward with the group's max and sums; the caller reduces over the group in between).
//
// Layout: logits, dlogits (N, Vp) T row-major (the shard: (N, Vl), of which the first `valid`
// columns are real tokens); targets (N) i32; losses (N), row_max (N), stats (N, 2) f32.
// One block of 256 threads per row, threads striding over the columns; every statistic is
// f32 (the shard sums accumulate in double, like the CPU backend's).
// Forward: one pass over the row with an online softmax per thread (running max m and
// s = sum exp(l - m), rescaled when the max grows), then the block's max M = block_max(m)
// and sum S = block_sum(s * exp(m - M)); loss = log(S) + M - l[target] (the log in double).
// Backward: the same statistics, then a second pass writing
//   dlogits[j] = exp(l[j] - M) * (dloss / S) - [j == target] * dloss   (j < vocab),
//   dlogits[j] = 0 on padding columns (j >= vocab).
// dlogits may alias logits: every thread has read its columns for the statistics before the
// block's reductions (whose barriers no thread passes early), and in the second pass each
// thread reads l[j] before writing dlogits[j] at the same index.
// Padding columns are never read (they may hold anything, NaN included).
// A target outside [0, vocab) gives a NaN loss and a NaN gradient row (the CPU backend
// rejects it; the GPU's targets live on the device, so the check is the host's: TokenStream
// validates every id < vocab before a batch is uploaded). It never reads outside the row.
#pragma once

#include "peng/core/cuda/kernels/common.cuh"

namespace peng::cuda::kernels {

constexpr int kCrossEntropyThreads = 256;

// Max and sum of exp(l - max) over l[0, v) of one row, on every thread of the block (a
// block-wide call: all threads must reach it). -inf entries add nothing; NaN propagates.
template <class T>
__device__ __forceinline__ void row_softmax_stats(const T* l, int64_t v, float& row_max,
                                                  float& row_sum) {
  float m = -INFINITY, s = 0.0f;
  for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
    const float x = to_float(l[j]);
    if (x > m) {
      s = s * expf(m - x) + 1.0f;  // m = -inf (first column): s = 0
      m = x;
    } else if (x != -INFINITY) {
      s += expf(x - m);
    }
  }
  const float mx = block_max(m);
  row_max = mx;
  row_sum = block_sum(m == -INFINITY ? 0.0f : s * expf(m - mx));
}

template <class T>
__global__ void cross_entropy_forward_kernel(const T* logits, const int32_t* targets, int64_t Vp,
                                             int64_t vocab, float* losses) {
  const int64_t row = blockIdx.x;
  const T* l = logits + row * Vp;  // (Vp), first vocab used
  float mx, sum;
  row_softmax_stats(l, vocab, mx, sum);
  if (threadIdx.x == 0) {
    const int32_t t = targets[row];
    losses[row] =
        t >= 0 && t < vocab ? float(log(double(sum)) + double(mx) - double(to_float(l[t]))) : NAN;
  }
}

// logits (N, Vp), targets (N) -> losses (N).
template <class Launch, class T>
void cross_entropy_forward(Launch& launch, const T* logits, const int32_t* targets, int64_t N,
                           int64_t Vp, int64_t vocab, float* losses) {
  launch(dim3(unsigned(N)), dim3(kCrossEntropyThreads), cross_entropy_forward_kernel<T>, logits,
         targets, Vp, vocab, losses);
}

template <class T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int32_t* targets, int64_t Vp,
                                              int64_t vocab, float dloss, T* dlogits) {
  const int64_t row = blockIdx.x;
  const T* l = logits + row * Vp;  // (Vp), may alias g
  T* g = dlogits + row * Vp;       // (Vp)
  float mx, sum;
  row_softmax_stats(l, vocab, mx, sum);
  const int32_t t = targets[row];
  const bool valid_target = t >= 0 && t < vocab;
  const float k = valid_target ? dloss / sum : NAN;
  for (int64_t j = threadIdx.x; j < Vp; j += blockDim.x) {
    float d = 0.0f;
    if (j < vocab) {
      d = expf(to_float(l[j]) - mx) * k;
      if (j == t) d -= dloss;
    }
    g[j] = from_float<T>(d);
  }
}

// logits (N, Vp), targets (N) -> dlogits (N, Vp) (may alias logits).
template <class Launch, class T>
void cross_entropy_backward(Launch& launch, const T* logits, const int32_t* targets, int64_t N,
                            int64_t Vp, int64_t vocab, float dloss, T* dlogits) {
  launch(dim3(unsigned(N)), dim3(kCrossEntropyThreads), cross_entropy_backward_kernel<T>, logits,
         targets, Vp, vocab, dloss, dlogits);
}

// ---- vocabulary shard: logits (N, Vl), columns [vocab_begin, vocab_begin + Vl) ----

template <class T>
__global__ void cross_entropy_shard_max_kernel(const T* logits, int64_t Vl, int64_t valid,
                                               float* row_max) {
  const int64_t row = blockIdx.x;
  const T* l = logits + row * Vl;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < valid; j += blockDim.x) m = fmaxf(m, to_float(l[j]));
  m = block_max(m);
  if (threadIdx.x == 0) row_max[row] = m;
}

// logits (N, Vl) -> row_max (N): max over the first `valid` columns (-inf when valid = 0).
template <class Launch, class T>
void cross_entropy_shard_max(Launch& launch, const T* logits, int64_t N, int64_t Vl, int64_t valid,
                             float* row_max) {
  launch(dim3(unsigned(N)), dim3(kCrossEntropyThreads), cross_entropy_shard_max_kernel<T>, logits,
         Vl, valid, row_max);
}

template <class T>
__global__ void cross_entropy_shard_sums_kernel(const T* logits, const int32_t* targets, int64_t Vl,
                                                int64_t vocab_begin, int64_t valid,
                                                const float* row_max, float* stats) {
  const int64_t row = blockIdx.x;
  const T* l = logits + row * Vl;
  const double mx = row_max[row];
  double s = 0.0;
  for (int64_t j = threadIdx.x; j < valid; j += blockDim.x) s += exp(double(to_float(l[j])) - mx);
  s = block_sum(s);
  if (threadIdx.x == 0) {
    const int64_t col = int64_t(targets[row]) - vocab_begin;
    stats[2 * row] = float(s);
    stats[2 * row + 1] = col >= 0 && col < valid ? to_float(l[col]) : 0.0f;
  }
}

// logits (N, Vl), targets (N), row_max (N) (the group's) -> stats (N, 2) =
// [sum over valid columns of exp(l - row_max), the target's logit when in the shard else 0].
template <class Launch, class T>
void cross_entropy_shard_sums(Launch& launch, const T* logits, const int32_t* targets, int64_t N,
                              int64_t Vl, int64_t vocab_begin, int64_t valid, const float* row_max,
                              float* stats) {
  launch(dim3(unsigned(N)), dim3(kCrossEntropyThreads), cross_entropy_shard_sums_kernel<T>, logits,
         targets, Vl, vocab_begin, valid, row_max, stats);
}

// Elementwise given the group's statistics; each thread reads l[j] before writing g[j].
template <class T>
__global__ void cross_entropy_shard_backward_kernel(const T* logits, const int32_t* targets,
                                                    int64_t Vl, int64_t vocab_begin, int64_t valid,
                                                    const float* row_max, const float* stats,
                                                    float dloss, T* dlogits) {
  const int64_t row = blockIdx.x;
  const T* l = logits + row * Vl;  // may alias g
  T* g = dlogits + row * Vl;
  const int64_t col = int64_t(targets[row]) - vocab_begin;
  const float mx = row_max[row];
  const float inv = 1.0f / stats[2 * row];
  for (int64_t j = threadIdx.x; j < Vl; j += blockDim.x) {
    const float d =
        j < valid ? dloss * (expf(to_float(l[j]) - mx) * inv - (j == col ? 1.0f : 0.0f)) : 0.0f;
    g[j] = from_float<T>(d);
  }
}

// logits (N, Vl), targets (N), row_max (N), stats (N, 2) (the group's) -> dlogits (N, Vl).
template <class Launch, class T>
void cross_entropy_shard_backward(Launch& launch, const T* logits, const int32_t* targets,
                                  int64_t N, int64_t Vl, int64_t vocab_begin, int64_t valid,
                                  const float* row_max, const float* stats, float dloss,
                                  T* dlogits) {
  launch(dim3(unsigned(N)), dim3(kCrossEntropyThreads), cross_entropy_shard_backward_kernel<T>,
         logits, targets, Vl, vocab_begin, valid, row_max, stats, dloss, dlogits);
}

}  // namespace peng::cuda::kernels
