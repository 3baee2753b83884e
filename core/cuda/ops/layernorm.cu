// CudaBackend::layernorm_forward/backward: checks, then kernels/layernorm.cuh.
#include "peng/core/cuda/kernels/layernorm.cuh"
#include "peng/core/cuda/launch.cuh"
#include "peng/core/cuda/ops/checks.h"

namespace peng::cuda {

void CudaBackend::layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps,
                                    Tensor& y, Tensor& mean, Tensor& rstd) {
  const char* op = "layernorm_forward";
  const auto [n, c] = checks::check_layernorm(device(), op, x, w, mean, rstd);
  ops::check_shape(*this, op, "b", b, {c});
  ops::check_shape(*this, op, "y", y, x.shape());
  CudaLaunch launch(device_);
  kernels::layernorm_forward(launch, x.data<const float>(), w.data<const float>(),
                             b.data<const float>(), eps, n, int(c), y.data<float>(),
                             mean.data<float>(), rstd.data<float>());
}

void CudaBackend::layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                     const Tensor& mean, const Tensor& rstd, Tensor& dx, Tensor& dw,
                                     Tensor& db) {
  const char* op = "layernorm_backward";
  const auto [n, c] = checks::check_layernorm(device(), op, x, w, mean, rstd);
  ops::check_shape(*this, op, "dy", dy, x.shape());
  ops::check_shape(*this, op, "dx", dx, x.shape());
  ops::check_shape(*this, op, "dw", dw, {c});
  ops::check_shape(*this, op, "db", db, {c});
  CudaLaunch launch(device_);
  kernels::layernorm_backward(launch, dy.data<const float>(), x.data<const float>(),
                              w.data<const float>(), mean.data<const float>(),
                              rstd.data<const float>(), n, int(c), dx.data<float>(),
                              dw.data<float>(), db.data<float>());
}

}  // namespace peng::cuda
