// AdamW on a flat f32 parameter range (the optimizer's fp32 master state, in both precision
// modes), torch.optim.AdamW's single-tensor path operation by operation, like the CPU
// backend (core/cpu/adamw.cc):
//   p = p * (1 - lr*wd)
//   m = m + (1-b1) * (g - m)                      (lerp(m, g, 1-b1) = b1 m + (1-b1) g)
//   v = v * b2 + (1-b2) * g * g
//   p = p - step_size * m / (sqrt(v) / sqrt(bc2) + eps)
// with bc1 = 1 - b1^t, bc2 = 1 - b2^t, step_size = lr / bc1: the scalars are computed in
// double on the host (as Python does) and rounded to f32 once (core/backend.h's
// adamw_scalars), the same values the CPU backend uses. sqrt and the division are IEEE-exact
// on the GPU (nvcc's default -prec-sqrt / -prec-div), so fp32 results agree with the CPU
// backend to an ulp or two (only where either compiler fuses a multiply-add).
// Layout: p, g, m, v (n) f32. A grid-stride loop over the flat range, at most kAdamWBlocks
// blocks of 256 threads; elements are independent (no reduction, no ordering question).
#pragma once

#include <cmath>

#include "peng/core/backend.h"  // AdamWScalars
#include "peng/core/cuda/kernels/common.cuh"

namespace peng::cuda::kernels {

constexpr int kAdamWThreads = 256;
constexpr int kAdamWBlocks = 4096;

template <class F = float>
__global__ void adamw_kernel(F* p, const F* g, F* m, F* v, int64_t n, AdamWScalars k) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float gi = g[i];
    const float mi = m[i] + k.w1 * (gi - m[i]);
    const float vi = v[i] * k.b2 + k.w2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * k.decay - k.step_size * (mi / (sqrtf(vi) / k.bc2_sqrt + k.eps));
  }
}

// param, grad, m, v (n) f32: one AdamW step in place on param, m, v.
template <class Launch>
void adamw_update(Launch& launch, float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWScalars& k) {
  const int64_t blocks = (n + kAdamWThreads - 1) / kAdamWThreads;
  launch(dim3(unsigned(blocks < kAdamWBlocks ? blocks : kAdamWBlocks)), dim3(kAdamWThreads),
         adamw_kernel<float>, param, grad, m, v, n, k);
}

}  // namespace peng::cuda::kernels
