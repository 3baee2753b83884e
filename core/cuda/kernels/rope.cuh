// Rotary position embedding (Hugging Face "rotate_half" form), forward and backward, in place.
//
// Layout: x (B, T, G * hd) row-major, T elements, G heads of hd channels (a fused qkv:
// G = H + 2K); the first n_rot heads of every row are rotated (the q and k heads:
// n_rot = H + K), the rest are left as they are. cos, sin (Tmax >= T, hd/2) f32 (angles stay
// f32 in every precision): cos and sin of t * inv_freq[i], rows 0..T-1 used.
// A row (b, t) holds n_rot * hd/2 channel pairs: pair p is channel j = p % (hd/2) of head
// r = p / (hd/2), paired with channel j + hd/2. Grid (ceil(pairs per row / 256),
// min(T, max_row_blocks), min(B, max_row_blocks)): thread x of block (bx, by, bz) handles
// pair bx * 256 + x of the rows (b, t) with t = by, by + gridDim.y, ... and b = bz,
// bz + gridDim.z, ... (no 64-bit index division). Each pair is read and written by one
// thread.
// Forward, with x1 = x[j], x2 = x[j + hd/2] of a head at position t:
//   x1' = x1 cos[t] - x2 sin[t],   x2' = x2 cos[t] + x1 sin[t]
// Backward: the rotation is orthogonal, so its gradient is the transposed rotation, the
// forward with sin negated (sign = -1), as in core/cpu/rope.cc:
//   dx1 = dy1 cos[t] + dy2 sin[t],  dx2 = dy2 cos[t] - dy1 sin[t]
#pragma once

#include "peng/core/cuda/kernels/elementwise.cuh"

namespace peng::cuda::kernels {

constexpr int kRopeRowBlocks = 1024;  // cap of the grid's y (positions) and z (batch)

template <class T>
__global__ void rope_kernel(T* x, int64_t B, int64_t seq_len, int64_t width, int n_rot, int hd,
                            const float* cos, const float* sin, float sign) {
  const int half = hd / 2;
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n_rot * half) return;
  const int r = p / half, j = p % half;
  for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
    for (int64_t t = blockIdx.y; t < seq_len; t += gridDim.y) {
      T* x1 = x + (b * seq_len + t) * width + r * hd + j;
      T* x2 = x1 + half;
      const float a = to_float(*x1), v = to_float(*x2);
      const float c = cos[t * half + j], s = sign * sin[t * half + j];
      *x1 = from_float<T>(a * c - v * s);
      *x2 = from_float<T>(v * c + a * s);
    }
  }
}

// x (B, T, n_heads * hd) rotated in place on its first n_rot heads by +angle (sign 1, the
// forward) or -angle (sign -1, the backward); cos, sin (Tmax >= T, hd/2). max_row_blocks
// caps the grid's y and z (tests lower it to exercise the loops).
template <class Launch, class T>
void rope(Launch& launch, T* x, int64_t B, int64_t seq_len, int n_heads, int n_rot, int hd,
          const float* cos, const float* sin, float sign, int max_row_blocks = kRopeRowBlocks) {
  const int64_t row_pairs = int64_t(n_rot) * (hd / 2);
  const dim3 grid(ceil_div(row_pairs, kPointwiseThreads),
                  unsigned(seq_len < max_row_blocks ? seq_len : max_row_blocks),
                  unsigned(B < max_row_blocks ? B : max_row_blocks));
  launch(grid, dim3(kPointwiseThreads), rope_kernel<T>, x, B, seq_len, int64_t(n_heads) * hd, n_rot,
         hd, cos, sin, sign);
}

template <class Launch, class T>
void rope_forward(Launch& launch, T* x, int64_t B, int64_t seq_len, int n_heads, int n_rot, int hd,
                  const float* cos, const float* sin, int max_row_blocks = kRopeRowBlocks) {
  rope(launch, x, B, seq_len, n_heads, n_rot, hd, cos, sin, 1.0f, max_row_blocks);
}

template <class Launch, class T>
void rope_backward(Launch& launch, T* dx, int64_t B, int64_t seq_len, int n_heads, int n_rot,
                   int hd, const float* cos, const float* sin,
                   int max_row_blocks = kRopeRowBlocks) {
  rope(launch, dx, B, seq_len, n_heads, n_rot, hd, cos, sin, -1.0f, max_row_blocks);
}

}  // namespace peng::cuda::kernels
