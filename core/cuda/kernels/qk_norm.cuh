// Per-head RMSNorm of the query and key heads of a fused qkv (Qwen3's q_norm / k_norm),
// forward and backward.
//
// Layout: qkv, out, dout, dqkv (rows = B*T, G * hd) row-major, T elements, G = H + 2K heads of
// hd channels per row: H query heads, K key heads, K value heads (core/backend.h). Head slot
// s = row * G + r starts at element s * hd. Slots r < H are normalised with wq (hd), slots
// H <= r < H + K with wk (hd), value slots are copied. rstd (rows, H + K) f32; dwq, dwk (hd)
// f32 (parameter gradients accumulate in f32 whatever T is).
// One warp per head slot (heads are short: hd = 64..256), 8 warps per block; a lane strides
// over the head's channels, one warp_sum per head, no block barriers.
// Forward, per head x (hd):  rstd = 1 / sqrt(sum(x^2) * (1/hd) + eps),  y = x * rstd * w.
// Backward, with xhat = x * rstd and g = w * dy:
//   dx = rstd * (g - xhat * mean(g * xhat))   (overwritten; dqkv may alias dout: a lane
//                                             rewrites only the elements it read, after the
//                                             warp_sum that needs every lane's reads)
//   dw += sum over heads dy * xhat           (dwq over query heads, dwk over key heads)
// The backward runs a grid of at most kQkNormBlocks blocks; warp gw of the grid's W warps
// handles slots gw, gw + W, ... and accumulates into row gw of two scratch matrices (W, hd)
// (a lane owns its columns: no races); add_column_sums adds the rows in order
// (deterministic).
#pragma once

#include "peng/core/cuda/kernels/common.cuh"

namespace peng::cuda::kernels {

constexpr int kQkNormThreads = 256;
constexpr int kQkNormWarps = kQkNormThreads / kWarp;  // head slots per block
constexpr int kQkNormBlocks = 64;                     // blocks of the backward pass

// One warp per head slot: qkv (rows, G * hd) -> out (rows, G * hd), rstd (rows, H + K).
template <class T>
__global__ void qk_norm_forward_kernel(const T* qkv, const T* wq, const T* wk, float eps,
                                       int64_t rows, int H, int K, int hd, T* out, float* rstd) {
  const int G = H + 2 * K, normed = H + K;
  const int64_t slot = int64_t(blockIdx.x) * kQkNormWarps + threadIdx.x / kWarp;
  if (slot >= rows * G) return;  // the whole warp: slot is uniform over it
  const int lane = threadIdx.x % kWarp;
  const int64_t row = slot / G;
  const int r = int(slot % G);
  const T* xh = qkv + slot * hd;  // (hd)
  T* yh = out + slot * hd;        // (hd)
  if (r >= normed) {              // value head: copied
    for (int j = lane; j < hd; j += kWarp) yh[j] = xh[j];
    return;
  }
  const T* w = r < H ? wq : wk;  // (hd)
  float sq = 0.0f;
  for (int j = lane; j < hd; j += kWarp) {
    const float v = to_float(xh[j]);
    sq += v * v;
  }
  const float rs = 1.0f / sqrtf(warp_sum(sq) * (1.0f / float(hd)) + eps);
  for (int j = lane; j < hd; j += kWarp)
    yh[j] = from_float<T>(to_float(xh[j]) * rs * to_float(w[j]));
  if (lane == 0) rstd[row * normed + r] = rs;
}

// qkv (rows, (H + 2K) * hd), wq, wk (hd) -> out (like qkv), rstd (rows, H + K).
template <class Launch, class T>
void qk_norm_forward(Launch& launch, const T* qkv, const T* wq, const T* wk, float eps,
                     int64_t rows, int H, int K, int hd, T* out, float* rstd) {
  const int64_t slots = rows * (H + 2 * K);
  launch(dim3(ceil_div(slots, kQkNormWarps)), dim3(kQkNormThreads), qk_norm_forward_kernel<T>, qkv,
         wq, wk, eps, rows, H, K, hd, out, rstd);
}

// Warp gw of W = gridDim.x * kQkNormWarps handles slots gw, gw + W, ...; partial_dwq,
// partial_dwk (W, hd).
template <class T>
__global__ void qk_norm_backward_kernel(const T* dout, const T* qkv, const T* wq, const T* wk,
                                        const float* rstd, int64_t rows, int H, int K, int hd,
                                        T* dqkv, float* partial_dwq, float* partial_dwk) {
  const int G = H + 2 * K, normed = H + K;
  const int lane = threadIdx.x % kWarp;
  const int64_t gw = int64_t(blockIdx.x) * kQkNormWarps + threadIdx.x / kWarp;
  const int64_t W = int64_t(gridDim.x) * kQkNormWarps;
  float* pq = partial_dwq + gw * hd;  // (hd)
  float* pk = partial_dwk + gw * hd;  // (hd)
  for (int j = lane; j < hd; j += kWarp) pq[j] = pk[j] = 0.0f;
  const float inv_hd = 1.0f / float(hd);
  for (int64_t slot = gw; slot < rows * G; slot += W) {
    const int64_t row = slot / G;
    const int r = int(slot % G);
    const T* dyh = dout + slot * hd;  // (hd)
    const T* xh = qkv + slot * hd;    // (hd)
    T* dxh = dqkv + slot * hd;        // (hd), may be dyh
    if (r >= normed) {                // value head: the gradient passes through
      if (dxh != dyh) {
        for (int j = lane; j < hd; j += kWarp) dxh[j] = dyh[j];
      }
      continue;
    }
    const T* w = r < H ? wq : wk;  // (hd)
    float* pdw = r < H ? pq : pk;  // (hd)
    const float rs = rstd[row * normed + r];
    float gx = 0.0f;
    for (int j = lane; j < hd; j += kWarp) {
      gx += to_float(w[j]) * to_float(dyh[j]) * to_float(xh[j]);
    }
    const float gx_mean = warp_sum(gx) * rs * inv_hd;  // mean(g * xhat)
    for (int j = lane; j < hd; j += kWarp) {
      const float d = to_float(dyh[j]);
      const float xhat = to_float(xh[j]) * rs;
      pdw[j] += d * xhat;
      dxh[j] = from_float<T>(rs * (to_float(w[j]) * d - xhat * gx_mean));
    }
  }
}

// dout, qkv (rows, (H + 2K) * hd), wq, wk (hd), rstd (rows, H + K) -> dqkv (like qkv)
// overwritten (may alias dout), dwq, dwk (hd) +=.
template <class Launch, class T>
void qk_norm_backward(Launch& launch, const T* dout, const T* qkv, const T* wq, const T* wk,
                      const float* rstd, int64_t rows, int H, int K, int hd, T* dqkv, float* dwq,
                      float* dwk) {
  const int64_t slots = rows * (H + 2 * K);
  const int64_t need = (slots + kQkNormWarps - 1) / kQkNormWarps;
  const int blocks = int(need < kQkNormBlocks ? need : kQkNormBlocks);
  if (blocks == 0) return;
  const int warps = blocks * kQkNormWarps;
  float* partial_dwq = launch.template scratch<float>(size_t(warps) * hd);
  float* partial_dwk = launch.template scratch<float>(size_t(warps) * hd);
  launch(dim3(unsigned(blocks)), dim3(kQkNormThreads), qk_norm_backward_kernel<T>, dout, qkv, wq,
         wk, rstd, rows, H, K, hd, dqkv, partial_dwq, partial_dwk);
  add_column_sums(launch, partial_dwq, warps, hd, dwq);
  add_column_sums(launch, partial_dwk, warps, hd, dwk);
}

}  // namespace peng::cuda::kernels
