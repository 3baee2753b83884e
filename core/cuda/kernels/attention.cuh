// Causal grouped-query self-attention, the exact path: forward and backward with the T x T
// probabilities saved (the bf16 speed path is cuDNN's fused flash attention).
//
// Layout (core/backend.h): qkv (B, T, W), W = (H + 2K) hd = [q heads | k heads | v heads]:
// query head h at columns h hd, its kv head g = h / (H / K) at (H + g) hd (keys) and
// (H + K + g) hd (values); row t of a head is a (hd) vector with stride W between rows.
// out, dout (B, T, C), C = H hd, head h at columns h hd. att (B, H, T, T) f32: row t of
// head h holds the probabilities P[t, 0..t] and zeros above the diagonal. dqkv like qkv.
// scale = 1 / sqrt(hd).
//
// Forward: one block of kAttThreads threads per query row (b, h, t):
//   1. scores: warp w takes the keys j = w, w + warps, ... <= t; its lanes split the products
//      of q_t . k_j over hd and warp_sum them; att[b, h, t, j] = scale q_t . k_j;
//   2. softmax over j <= t in place: block_max, exp(s - max), block_sum, times 1 / sum;
//      zeros for j > t;
//   3. out[b, t, h] = sum_j P[t, j] v_j (weighted_row_sum: warp w takes rows j = w, w + warps,
//      ..., its lanes columns d = lane + 32 c; the warps' partial rows are added in warp order
//      through shared memory, kAttChunk columns at a time).
// Backward, with dP = dO V^T and dS = P o (dP - rowsum(P o dP)) scale:
//   kernel 1, one block per query row (b, h, t):
//      dP[t, j] = dO_t . v_j (as step 1) into a scratch dS (B, H, T, T), j <= t;
//      D = sum_j P[t, j] dP[t, j] (block_sum);  dS[t, j] = P[t, j] (dP[t, j] - D) scale;
//      dq_t = sum_{j <= t} dS[t, j] k_j (as step 3);
//   kernel 2, one block per key row (b, g, s) of a kv head:
//      dk_s = sum_{h in group(g)} sum_{t >= s} dS_h[t, s] q_{h, t}
//      dv_s = sum_{h in group(g)} sum_{t >= s} P_h[t, s] dO_{h, t}
//      over the pairs (h, t), h-major, split over the warps as in step 3.
// Each output element is written by one thread, every sum runs in a fixed order (fixed block
// size, fixed assignment of keys to warps): no atomics, bit-identical from run to run. Only
// the pairs j <= t are computed: T (T + 1) / 2 of the T^2 square per product.
// Element type E (qkv, out, dout, dqkv): float or __nv_bfloat16; att, dS and all arithmetic f32.
#pragma once

#include "peng/core/cuda/kernels/common.cuh"

namespace peng::cuda::kernels {

constexpr int kAttThreads = 128;
constexpr int kAttWarps = kAttThreads / kWarp;
constexpr int kAttColsPerLane = 4;
constexpr int kAttChunk = kWarp * kAttColsPerLane;  // output columns per pass

// The dimensions every attention kernel gets.
struct AttDims {
  int seq, n_head, n_kv_head, hd;
  __host__ __device__ int64_t width() const { return int64_t(n_head + 2 * n_kv_head) * hd; }
};

// out[d] = sum_{j < n} w[j] m[j ldm + d] for d < hd, as E. w: f32 weights the block wrote
// (visible after a barrier). Every thread of the block must call it; ends with a barrier.
template <class E>
__device__ void weighted_row_sum(const float* w, const E* m, int64_t ldm, int n, int hd, E* out) {
  __shared__ float partial[kAttWarps][kAttChunk];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int d0 = 0; d0 < hd; d0 += kAttChunk) {
    float acc[kAttColsPerLane] = {};
    for (int j = warp; j < n; j += kAttWarps) {
      const float wj = w[j];
      const E* row = m + j * ldm + d0;
      for (int c = 0; c < kAttColsPerLane; ++c) {
        const int d = lane + c * kWarp;
        if (d0 + d < hd) acc[c] += wj * to_float(row[d]);
      }
    }
    for (int c = 0; c < kAttColsPerLane; ++c) partial[warp][lane + c * kWarp] = acc[c];
    __syncthreads();
    for (int d = threadIdx.x; d < kAttChunk && d0 + d < hd; d += blockDim.x) {
      float s = 0.0f;
      for (int w2 = 0; w2 < kAttWarps; ++w2) s += partial[w2][d];
      out[d0 + d] = from_float<E>(s);
    }
    __syncthreads();
  }
}

// dst[j] = scale (x . rows_j) for j <= last, rows_j = rows + j ldr; a warp per row j.
template <class E>
__device__ void row_dots(const E* x, const E* rows, int64_t ldr, int last, int hd, float scale,
                         float* dst) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int j = warp; j <= last; j += kAttWarps) {
    const E* r = rows + j * ldr;
    float s = 0.0f;
    for (int d = lane; d < hd; d += kWarp) s += to_float(x[d]) * to_float(r[d]);
    s = warp_sum(s);
    if (lane == 0) dst[j] = s * scale;
  }
}

// Grid: one block per (b, h, t), blockIdx.x = (b H + h) T + t.
template <class E>
__global__ void attention_forward_kernel(const E* qkv, AttDims dm, float scale, E* out,
                                         float* att) {
  const int seq = dm.seq, H = dm.n_head, K = dm.n_kv_head, hd = dm.hd;
  const int64_t row = blockIdx.x;  // (b, h, t)
  const int t = int(row % seq);
  const int h = int(row / seq % H);
  const int64_t b = row / seq / H;
  const int g = h / (H / K);
  const int64_t W = dm.width();
  const E* base = qkv + b * seq * W;
  float* p = att + row * seq;  // att[b, h, t, :]

  row_dots(base + t * W + h * hd, base + (H + g) * hd, W, t, hd, scale, p);
  __syncthreads();
  float mx = -INFINITY;
  for (int j = threadIdx.x; j <= t; j += blockDim.x) mx = fmaxf(mx, p[j]);
  mx = block_max(mx);
  float sum = 0.0f;
  for (int j = threadIdx.x; j <= t; j += blockDim.x) {
    const float e = expf(p[j] - mx);
    p[j] = e;
    sum += e;
  }
  const float inv = 1.0f / block_sum(sum);
  for (int j = threadIdx.x; j < seq; j += blockDim.x) p[j] = j <= t ? p[j] * inv : 0.0f;
  __syncthreads();
  weighted_row_sum(p, base + int64_t(H + K + g) * hd, W, t + 1, hd,
                   out + (b * seq + t) * int64_t(H) * hd + int64_t(h) * hd);
}

// qkv (B, T, W) -> out (B, T, H hd), att (B, H, T, T).
template <class Launch, class E>
void attention_forward(Launch& launch, const E* qkv, int64_t B, AttDims dm, E* out, float* att) {
  const float scale = 1.0f / sqrtf(float(dm.hd));
  launch(dim3(unsigned(B * dm.n_head * dm.seq)), dim3(kAttThreads), attention_forward_kernel<E>,
         qkv, dm, scale, out, att);
}

// Kernel 1 of the backward: dS rows and dq. Grid: one block per (b, h, t) as the forward.
template <class E>
__global__ void attention_backward_query_kernel(const E* dout, const E* qkv, const float* att,
                                                AttDims dm, float scale, float* ds, E* dqkv) {
  const int seq = dm.seq, H = dm.n_head, K = dm.n_kv_head, hd = dm.hd;
  const int64_t row = blockIdx.x;
  const int t = int(row % seq);
  const int h = int(row / seq % H);
  const int64_t b = row / seq / H;
  const int g = h / (H / K);
  const int64_t W = dm.width();
  const E* base = qkv + b * seq * W;
  const float* p = att + row * seq;
  float* dsr = ds + row * seq;

  // dP[t, j] = dO_t . v_j
  row_dots(dout + (b * seq + t) * int64_t(H) * hd + int64_t(h) * hd, base + int64_t(H + K + g) * hd,
           W, t, hd, 1.0f, dsr);
  __syncthreads();
  float part = 0.0f;
  for (int j = threadIdx.x; j <= t; j += blockDim.x) part += p[j] * dsr[j];
  const float D = block_sum(part);
  for (int j = threadIdx.x; j <= t; j += blockDim.x) dsr[j] = p[j] * (dsr[j] - D) * scale;
  __syncthreads();
  // dq_t = dS[t, 0..t] K[0..t]
  weighted_row_sum(dsr, base + int64_t(H + g) * hd, W, t + 1, hd,
                   dqkv + (b * seq + t) * W + h * hd);
}

// Kernel 2 of the backward: dk and dv of key row s of kv head g, summed over the group's
// query heads. Grid: one block per (b, g, s), blockIdx.x = (b K + g) T + s.
template <class E>
__global__ void attention_backward_key_kernel(const E* dout, const E* qkv, const float* att,
                                              const float* ds, AttDims dm, E* dqkv) {
  __shared__ float partial_k[kAttWarps][kAttChunk];
  __shared__ float partial_v[kAttWarps][kAttChunk];
  const int seq = dm.seq, H = dm.n_head, K = dm.n_kv_head, hd = dm.hd;
  const int group = H / K;
  const int64_t row = blockIdx.x;
  const int s = int(row % seq);
  const int g = int(row / seq % K);
  const int64_t b = row / seq / K;
  const int64_t W = dm.width(), C = int64_t(H) * hd;
  const E* base = qkv + b * seq * W;
  const int rows = seq - s;        // queries t = s .. seq - 1 see key s
  const int pairs = group * rows;  // (h, t), h-major
  E* dk = dqkv + (b * seq + s) * W + int64_t(H + g) * hd;
  E* dv = dqkv + (b * seq + s) * W + int64_t(H + K + g) * hd;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int d0 = 0; d0 < hd; d0 += kAttChunk) {
    float acc_k[kAttColsPerLane] = {}, acc_v[kAttColsPerLane] = {};
    for (int u = warp; u < pairs; u += kAttWarps) {
      const int h = g * group + u / rows, t = s + u % rows;
      const int64_t at = ((b * H + h) * seq + t) * seq + s;  // [b, h, t, s]
      const float pts = att[at], dst = ds[at];
      const E* q = base + t * W + int64_t(h) * hd + d0;
      const E* dO = dout + (b * seq + t) * C + int64_t(h) * hd + d0;
      for (int c = 0; c < kAttColsPerLane; ++c) {
        const int d = lane + c * kWarp;
        if (d0 + d < hd) {
          acc_k[c] += dst * to_float(q[d]);
          acc_v[c] += pts * to_float(dO[d]);
        }
      }
    }
    for (int c = 0; c < kAttColsPerLane; ++c) {
      partial_k[warp][lane + c * kWarp] = acc_k[c];
      partial_v[warp][lane + c * kWarp] = acc_v[c];
    }
    __syncthreads();
    for (int d = threadIdx.x; d < kAttChunk && d0 + d < hd; d += blockDim.x) {
      float sk = 0.0f, sv = 0.0f;
      for (int w2 = 0; w2 < kAttWarps; ++w2) {
        sk += partial_k[w2][d];
        sv += partial_v[w2][d];
      }
      dk[d0 + d] = from_float<E>(sk);
      dv[d0 + d] = from_float<E>(sv);
    }
    __syncthreads();
  }
}

// dout (B, T, H hd), qkv, att -> dqkv (B, T, W) overwritten. Scratch: dS (B, H, T, T) f32.
template <class Launch, class E>
void attention_backward(Launch& launch, const E* dout, const E* qkv, const float* att, int64_t B,
                        AttDims dm, E* dqkv) {
  const float scale = 1.0f / sqrtf(float(dm.hd));
  float* ds = launch.template scratch<float>(size_t(B) * dm.n_head * dm.seq * dm.seq);
  launch(dim3(unsigned(B * dm.n_head * dm.seq)), dim3(kAttThreads),
         attention_backward_query_kernel<E>, dout, qkv, att, dm, scale, ds, dqkv);
  launch(dim3(unsigned(B * dm.n_kv_head * dm.seq)), dim3(kAttThreads),
         attention_backward_key_kernel<E>, dout, qkv, att, static_cast<const float*>(ds), dm, dqkv);
}

}  // namespace peng::cuda::kernels
