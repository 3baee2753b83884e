// Rotary position embedding (Hugging Face "rotate_half" form), forward and backward, in place
// on the CPU.
//
// Layout: x (B, T, G * hd) of G heads of hd channels (a fused qkv: G = H + 2K); the first
// n_rot heads of every row are rotated (the q and k heads: n_rot = H + K), the rest are left
// as they are. cos, sin (Tmax >= T, hd/2) hold cos and sin of the angles t * inv_freq[i];
// rows 0..T-1 are used. Rows (b, t) are spread over OpenMP threads, the hd/2 pairs of a head
// are one `omp simd` loop.
// Forward, per head with x1 = x[:hd/2], x2 = x[hd/2:] (channel i pairs with i + hd/2):
//   x1' = x1 cos[t] - x2 sin[t],   x2' = x2 cos[t] + x1 sin[t]
// Backward: the rotation is orthogonal, so its gradient is the transposed rotation, the
// forward with sin negated:
//   dx1 = dy1 cos[t] + dy2 sin[t],  dx2 = dy2 cos[t] - dy1 sin[t]
#include "peng/core/cpu/cpu_backend.h"

namespace peng {
namespace {

// Checks the arguments and rotates in place by +angle (sign 1) or -angle (sign -1).
void rope_apply(const char* op, const char* x_name, Tensor& x, int n_heads, int n_rot,
                const Tensor& cos, const Tensor& sin, float sign) {
  const int64_t hd = checks::check_rope(Device::cpu(), op, x_name, x, n_heads, n_rot, cos, sin);
  const int64_t T = x.dim(1), width = x.dim(2), half = hd / 2;

  float* px = x.data<float>();
  const float* pcos = cos.data<const float>();
  const float* psin = sin.data<const float>();
  const int64_t rows = x.dim(0) * T;
#pragma omp parallel for schedule(static) if (rows * n_rot * hd >= cpu::kParallelMin)
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = i % T;
    const float* c = pcos + t * half;  // (hd/2)
    const float* s = psin + t * half;  // (hd/2)
    for (int64_t r = 0; r < n_rot; ++r) {
      float* x1 = px + i * width + r * hd;  // (hd/2)
      float* x2 = x1 + half;                // (hd/2)
#pragma omp simd
      for (int64_t j = 0; j < half; ++j) {
        const float a = x1[j], b = x2[j], sj = sign * s[j];
        x1[j] = a * c[j] - b * sj;
        x2[j] = b * c[j] + a * sj;
      }
    }
  }
}

}  // namespace

void CpuBackend::rope_forward(Tensor& x, int n_heads, int n_rot, const Tensor& cos,
                              const Tensor& sin) {
  rope_apply("rope_forward", "x", x, n_heads, n_rot, cos, sin, 1.0f);
}

void CpuBackend::rope_backward(Tensor& dx, int n_heads, int n_rot, const Tensor& cos,
                               const Tensor& sin) {
  rope_apply("rope_backward", "dx", dx, n_heads, n_rot, cos, sin, -1.0f);
}

}  // namespace peng
