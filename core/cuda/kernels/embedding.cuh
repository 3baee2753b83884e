// Token + position embedding, forward and backward, on the whole table or on a vocabulary
// shard (Megatron's vocab-parallel embedding: the whole table is the shard with
// vocab_begin 0 and Vl = Vp).
//
// Layout: tokens (B, T) i32, read as BT = B*T rows; wte (Vl, C) T holding the vocabulary
// rows [vocab_begin, vocab_begin + Vl); wpe (Tmax >= T, C) T or null; out, dout (B, T, C) T;
// dwte (Vl, C) and dwpe (Tmax, C) f32 (parameter gradients accumulate in f32 whatever T is).
//
// Forward: one block per (b, t) row, threads striding over the channels:
//   out[b, t, c] = wte[tok - vocab_begin, c] (0 when tok is not in the shard) + wpe[t, c]
//   (when wpe is given), added in f32 — the CPU backend's operations, so fp32 is bit-exact.
// Backward, deterministic without atomics:
//   dwte: the rows are split into R = min(Vl, 64) buckets (row mod R, blockIdx.y) and the
//   channels over threads (blockIdx.x * blockDim.x + threadIdx.x): thread (c, r) owns
//   element c of every row of bucket r. Its block stages the token ids through shared
//   memory, 256 at a time, and every thread walks all BT tokens IN ORDER, adding
//   dout[bt, c] into dwte[row, c] for the tokens of its bucket. So each dwte element is the
//   old value plus its tokens' gradients summed sequentially in (b, t) order: the CPU
//   backend's order, fp32 results bit-identical with it, and no two threads ever touch the
//   same element. Each dout element is read by one thread only; the walk over token ids
//   (C * R * BT shared-memory reads, warp-uniform branches) is the price of having no sort.
//   dwpe: one thread per (t, c) adds dout[b, t, c] for b = 0, 1, ... in order (CPU order).
// Token ids outside [vocab_begin, vocab_begin + Vl) — other shards' tokens, and also ids
// outside the vocabulary — are "not in this shard": a zero row forward, nothing backward;
// no id makes a kernel touch memory outside the tables. (The whole-table ops of the CPU
// backend reject such ids; on the GPU the ids live on the device, so the check is the
// host's: TokenStream::read validates every id < vocab before a batch is uploaded.)
#pragma once

#include "peng/core/cuda/kernels/common.cuh"

namespace peng::cuda::kernels {

constexpr int kEmbeddingThreads = 256;
constexpr int kEmbeddingBuckets = 64;  // most row buckets (blockIdx.y) of the dwte pass

// The shard row of a token id, or -1 when the token is not in [vocab_begin, vocab_begin + Vl).
__device__ __forceinline__ int64_t shard_row(int32_t tok, int64_t vocab_begin, int64_t Vl) {
  const int64_t row = int64_t(tok) - vocab_begin;
  return row >= 0 && row < Vl ? row : -1;
}

// Block = row bt of (B*T); wpe may be null.
template <class T>
__global__ void embedding_forward_kernel(const int32_t* tokens, const T* wte, int64_t vocab_begin,
                                         int64_t Vl, const T* wpe, int64_t seq, int C, T* out) {
  const int64_t bt = blockIdx.x;
  const int64_t row = shard_row(tokens[bt], vocab_begin, Vl);
  const T* e = row >= 0 ? wte + row * C : nullptr;    // (C) or none
  const T* p = wpe ? wpe + (bt % seq) * C : nullptr;  // (C) or none
  T* o = out + bt * C;                                // (C)
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float v;
    if (e && p)
      v = to_float(e[c]) + to_float(p[c]);
    else if (e)
      v = to_float(e[c]);
    else if (p)
      v = to_float(p[c]);
    else
      v = 0.0f;
    o[c] = from_float<T>(v);
  }
}

// tokens (B, seq), wte (Vl, C), wpe (>= seq, C) or null -> out (B, seq, C).
template <class Launch, class T>
void embedding_forward(Launch& launch, const int32_t* tokens, const T* wte, int64_t vocab_begin,
                       int64_t Vl, const T* wpe, int64_t B, int64_t seq, int C, T* out) {
  launch(dim3(unsigned(B * seq)), dim3(kEmbeddingThreads), embedding_forward_kernel<T>, tokens, wte,
         vocab_begin, Vl, wpe, seq, C, out);
}

// Thread (c, r): c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y of `buckets`.
template <class T>
__global__ void embedding_backward_wte_kernel(const T* dout, const int32_t* tokens, int64_t BT,
                                              int C, int64_t vocab_begin, int64_t Vl, int buckets,
                                              float* dwte) {
  __shared__ int64_t rows[kEmbeddingThreads];  // the tile's rows of this bucket, else -1
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  const int bucket = blockIdx.y;
  for (int64_t t0 = 0; t0 < BT; t0 += blockDim.x) {
    const int64_t i = t0 + threadIdx.x;
    int64_t row = i < BT ? shard_row(tokens[i], vocab_begin, Vl) : -1;
    if (row >= 0 && row % buckets != bucket) row = -1;
    rows[threadIdx.x] = row;
    __syncthreads();
    const int n = BT - t0 < int64_t(blockDim.x) ? int(BT - t0) : int(blockDim.x);
    if (c < C) {
      for (int k = 0; k < n; ++k) {  // tokens in order: the summation order is fixed
        const int64_t r = rows[k];
        if (r >= 0) dwte[r * C + c] += to_float(dout[(t0 + k) * C + c]);
      }
    }
    __syncthreads();  // the tile is read before the next one overwrites it
  }
}

// Thread per (t, c) of (seq, C): dwpe[t, c] += dout[b, t, c], b in order.
template <class T>
__global__ void embedding_backward_wpe_kernel(const T* dout, int64_t B, int64_t seq, int C,
                                              float* dwpe) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t per_batch = seq * C;
  if (i >= per_batch) return;
  float s = dwpe[i];
  for (int64_t b = 0; b < B; ++b) s += to_float(dout[b * per_batch + i]);
  dwpe[i] = s;
}

// dout (B, seq, C), tokens (B, seq) -> dwte (Vl, C) +=, dwpe (>= seq, C) += when not null.
template <class Launch, class T>
void embedding_backward(Launch& launch, const T* dout, const int32_t* tokens, int64_t B,
                        int64_t seq, int C, int64_t vocab_begin, int64_t Vl, float* dwte,
                        float* dwpe) {
  const int buckets = int(Vl < kEmbeddingBuckets ? Vl : kEmbeddingBuckets);
  launch(dim3(ceil_div(C, kEmbeddingThreads), unsigned(buckets)), dim3(kEmbeddingThreads),
         embedding_backward_wte_kernel<T>, dout, tokens, B * seq, C, vocab_begin, Vl, buckets,
         dwte);
  if (dwpe) {
    launch(dim3(ceil_div(seq * C, kEmbeddingThreads)), dim3(kEmbeddingThreads),
           embedding_backward_wpe_kernel<T>, dout, B, seq, C, dwpe);
  }
}

}  // namespace peng::cuda::kernels
