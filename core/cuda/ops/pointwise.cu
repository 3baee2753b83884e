// CudaBackend::gelu, swiglu, rope, add, scale and cast: checks (the CPU backend's messages),
// then kernels/gelu.cuh, swiglu.cuh, rope.cuh, elementwise.cuh and cast.cuh.
#include "peng/core/cuda/kernels/cast.cuh"
#include "peng/core/cuda/kernels/elementwise.cuh"
#include "peng/core/cuda/kernels/gelu.cuh"
#include "peng/core/cuda/kernels/rope.cuh"
#include "peng/core/cuda/kernels/swiglu.cuh"
#include "peng/core/cuda/launch.cuh"
#include "peng/core/cuda/ops/checks.h"

namespace peng::cuda {
namespace {

// Checks gate_up (N, 2F); returns N and F.
struct GluDims {
  int64_t n, f;
};
GluDims check_gate_up(const CudaBackend& be, const char* op, const Tensor& gate_up) {
  ops::check_tensor(be, op, "gate_up", gate_up);
  PENG_CHECK(gate_up.ndim() >= 1 && gate_up.dim(-1) % 2 == 0, op,
             ": gate_up must be (N, 2F) = [gate | up], got ", gate_up.str());
  return {ops::rows_of(gate_up), gate_up.dim(-1) / 2};
}

// gate_up's shape with the last dimension F.
Shape half_shape(const Tensor& gate_up, int64_t f) {
  Shape s = gate_up.shape();
  s.back() = f;
  return s;
}

// Checks rope's arguments (core/cpu/rope.cc's rules and messages) and rotates x in place by
// +angle (sign 1) or -angle (sign -1).
void rope_apply(CudaBackend& be, const char* op, const char* x_name, Tensor& x, int n_heads,
                int n_rot, const Tensor& cos, const Tensor& sin, float sign) {
  const int64_t hd = checks::check_rope(be.device(), op, x_name, x, n_heads, n_rot, cos, sin);
  const int64_t B = x.dim(0), T = x.dim(1);
  CudaLaunch launch(be.index());
  kernels::rope(launch, x.data<float>(), B, T, n_heads, n_rot, int(hd), cos.data<const float>(),
                sin.data<const float>(), sign);
}

}  // namespace

void CudaBackend::gelu_forward(const Tensor& x, Tensor& y) {
  const char* op = "gelu_forward";
  ops::check_tensor(*this, op, "x", x);
  ops::check_shape(*this, op, "y", y, x.shape());
  CudaLaunch launch(device_);
  kernels::gelu_forward(launch, x.data<const float>(), x.numel(), y.data<float>());
}

void CudaBackend::gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) {
  const char* op = "gelu_backward";
  ops::check_tensor(*this, op, "x", x);
  ops::check_shape(*this, op, "dy", dy, x.shape());
  ops::check_shape(*this, op, "dx", dx, x.shape());
  CudaLaunch launch(device_);
  kernels::gelu_backward(launch, dy.data<const float>(), x.data<const float>(), x.numel(),
                         dx.data<float>());
}

void CudaBackend::swiglu_forward(const Tensor& gate_up, Tensor& out) {
  const char* op = "swiglu_forward";
  const auto [n, f] = check_gate_up(*this, op, gate_up);
  ops::check_shape(*this, op, "out", out, half_shape(gate_up, f));
  ops::check_no_overlap(op, "out", out, "gate_up", gate_up);
  CudaLaunch launch(device_);
  kernels::swiglu_forward(launch, gate_up.data<const float>(), n, f, out.data<float>());
}

void CudaBackend::swiglu_backward(const Tensor& dout, const Tensor& gate_up, Tensor& dgate_up) {
  const char* op = "swiglu_backward";
  const auto [n, f] = check_gate_up(*this, op, gate_up);
  ops::check_shape(*this, op, "dout", dout, half_shape(gate_up, f));
  ops::check_shape(*this, op, "dgate_up", dgate_up, gate_up.shape());
  ops::check_no_overlap(op, "dgate_up", dgate_up, "dout", dout);
  ops::check_no_overlap(op, "dgate_up", dgate_up, "gate_up", gate_up);
  CudaLaunch launch(device_);
  kernels::swiglu_backward(launch, dout.data<const float>(), gate_up.data<const float>(), n, f,
                           dgate_up.data<float>());
}

void CudaBackend::rope_forward(Tensor& x, int n_heads, int n_rot, const Tensor& cos,
                               const Tensor& sin) {
  rope_apply(*this, "rope_forward", "x", x, n_heads, n_rot, cos, sin, 1.0f);
}

void CudaBackend::rope_backward(Tensor& dx, int n_heads, int n_rot, const Tensor& cos,
                                const Tensor& sin) {
  rope_apply(*this, "rope_backward", "dx", dx, n_heads, n_rot, cos, sin, -1.0f);
}

void CudaBackend::add(const Tensor& a, const Tensor& b, Tensor& out) {
  const char* op = "add";
  ops::check_tensor(*this, op, "a", a);
  ops::check_shape(*this, op, "b", b, a.shape());
  ops::check_shape(*this, op, "out", out, a.shape());
  CudaLaunch launch(device_);
  kernels::add(launch, a.data<const float>(), b.data<const float>(), a.numel(), out.data<float>());
}

void CudaBackend::cast(const Tensor& x, Tensor& y) {
  const bool narrow = x.dtype() == DType::kF32;
  ops::check_tensor(*this, "cast", "x", x, narrow ? DType::kF32 : DType::kBF16);
  ops::check_shape(*this, "cast", "y", y, x.shape(), narrow ? DType::kBF16 : DType::kF32);
  CudaLaunch launch(device_);
  if (narrow) {
    kernels::cast_f32_to_bf16(launch, x.data<const float>(), x.numel(),
                              static_cast<__nv_bfloat16*>(y.raw_data()));
  } else {
    kernels::cast_bf16_to_f32(launch, static_cast<const __nv_bfloat16*>(x.raw_data()), x.numel(),
                              y.data<float>());
  }
}

void CudaBackend::scale(Tensor& x, float s) {
  ops::check_tensor(*this, "scale", "x", x);
  CudaLaunch launch(device_);
  kernels::scale(launch, x.data<float>(), x.numel(), s);
}

}  // namespace peng::cuda
