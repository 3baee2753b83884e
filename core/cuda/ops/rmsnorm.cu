// CudaBackend::rmsnorm_forward/backward and qk_norm_forward/backward: checks (the CPU
// backend's messages), then kernels/rmsnorm.cuh and kernels/qk_norm.cuh.
#include <utility>

#include "peng/core/cuda/kernels/qk_norm.cuh"
#include "peng/core/cuda/kernels/rmsnorm.cuh"
#include "peng/core/cuda/launch.cuh"
#include "peng/core/cuda/ops/checks.h"

namespace peng::cuda {
namespace {

using checks::QkvDims;

}  // namespace

void CudaBackend::rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y,
                                  Tensor& rstd) {
  const char* op = "rmsnorm_forward";
  const auto [n, c] = checks::check_rmsnorm(device(), op, x, w, rstd);
  ops::check_shape(*this, op, "y", y, x.shape());
  ops::check_no_overlap(op, "y", y, "x", x);
  ops::check_no_overlap(op, "rstd", rstd, "x", x);
  ops::check_no_overlap(op, "rstd", rstd, "y", y);
  CudaLaunch launch(device_);
  kernels::rmsnorm_forward(launch, x.data<const float>(), w.data<const float>(), eps, n, int(c),
                           y.data<float>(), rstd.data<float>());
}

void CudaBackend::rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                   const Tensor& rstd, Tensor& dx, Tensor& dw) {
  const char* op = "rmsnorm_backward";
  const auto [n, c] = checks::check_rmsnorm(device(), op, x, w, rstd);
  ops::check_shape(*this, op, "dy", dy, x.shape());
  ops::check_shape(*this, op, "dx", dx, x.shape());
  ops::check_shape(*this, op, "dw", dw, {c});
  ops::check_no_overlap(op, "dx", dx, "x", x);
  ops::check_no_overlap(op, "dw", dw, "dy", dy);
  ops::check_no_overlap(op, "dw", dw, "x", x);
  ops::check_no_overlap(op, "dw", dw, "dx", dx);
  CudaLaunch launch(device_);
  kernels::rmsnorm_backward(launch, dy.data<const float>(), x.data<const float>(),
                            w.data<const float>(), rstd.data<const float>(), n, int(c),
                            dx.data<float>(), dw.data<float>());
}

void CudaBackend::qk_norm_forward(const Tensor& qkv, int n_head, int n_kv_head, const Tensor& wq,
                                  const Tensor& wk, float eps, Tensor& out, Tensor& rstd) {
  const char* op = "qk_norm_forward";
  const QkvDims d = checks::check_qk_norm(device(), op, qkv, n_head, n_kv_head, wq, wk, rstd);
  ops::check_shape(*this, op, "out", out, qkv.shape());
  ops::check_no_overlap(op, "out", out, "qkv", qkv);
  ops::check_no_overlap(op, "rstd", rstd, "qkv", qkv);
  ops::check_no_overlap(op, "rstd", rstd, "out", out);
  CudaLaunch launch(device_);
  kernels::qk_norm_forward(launch, qkv.data<const float>(), wq.data<const float>(),
                           wk.data<const float>(), eps, d.b * d.t, n_head, n_kv_head, int(d.hd),
                           out.data<float>(), rstd.data<float>());
}

void CudaBackend::qk_norm_backward(const Tensor& dout, const Tensor& qkv, int n_head, int n_kv_head,
                                   const Tensor& wq, const Tensor& wk, const Tensor& rstd,
                                   Tensor& dqkv, Tensor& dwq, Tensor& dwk) {
  const char* op = "qk_norm_backward";
  const QkvDims d = checks::check_qk_norm(device(), op, qkv, n_head, n_kv_head, wq, wk, rstd);
  ops::check_shape(*this, op, "dout", dout, qkv.shape());
  ops::check_shape(*this, op, "dqkv", dqkv, qkv.shape());
  ops::check_shape(*this, op, "dwq", dwq, {d.hd});
  ops::check_shape(*this, op, "dwk", dwk, {d.hd});
  // dqkv may be dout itself (the kernel reads a head whole before writing it), not a part.
  if (dqkv.raw_data() != dout.raw_data()) ops::check_no_overlap(op, "dqkv", dqkv, "dout", dout);
  ops::check_no_overlap(op, "dqkv", dqkv, "qkv", qkv);
  ops::check_no_overlap(op, "dqkv", dqkv, "rstd", rstd);
  const std::pair<const char*, const Tensor*> read[] = {{"dout", &dout}, {"qkv", &qkv}};
  for (const auto& [name, t] : read) {
    ops::check_no_overlap(op, "dwq", dwq, name, *t);
    ops::check_no_overlap(op, "dwk", dwk, name, *t);
  }
  ops::check_no_overlap(op, "dwq", dwq, "dqkv", dqkv);
  ops::check_no_overlap(op, "dwk", dwk, "dqkv", dqkv);
  ops::check_no_overlap(op, "dwq", dwq, "dwk", dwk);
  CudaLaunch launch(device_);
  kernels::qk_norm_backward(launch, dout.data<const float>(), qkv.data<const float>(),
                            wq.data<const float>(), wk.data<const float>(),
                            rstd.data<const float>(), d.b * d.t, n_head, n_kv_head, int(d.hd),
                            dqkv.data<float>(), dwq.data<float>(), dwk.data<float>());
}

}  // namespace peng::cuda
