// CudaBackend::adamw_update (kernels/adamw.cuh) and the double-precision sums of
// kernels/reduce.cuh: sum_squares (waits: its double goes to the host), sum_squares_into
// and sum_into (queued: the accumulator stays on the device). The checks are core/op_checks.h's,
// as the CPU backend's.
#include "peng/core/cuda/kernels/adamw.cuh"
#include "peng/core/cuda/kernels/reduce.cuh"
#include "peng/core/cuda/launch.cuh"
#include "peng/core/cuda/memory.h"
#include "peng/core/cuda/ops/checks.h"

namespace peng::cuda {

void CudaBackend::adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                               const AdamWOptions& opt) {
  checks::check_adamw(device(), param, grad, m, v, opt);
  CudaLaunch launch(device_);
  kernels::adamw_update(launch, param.data<float>(), grad.data<const float>(), m.data<float>(),
                        v.data<float>(), param.numel(), adamw_scalars(opt));
}

double CudaBackend::sum_squares(const Tensor& x) {
  ops::check_tensor(*this, "sum_squares", "x", x);
  CudaLaunch launch(device_);
  double* total = launch.scratch<double>(1);
  kernels::sum_squares(launch, x.data<const float>(), x.numel(), total);
  double result = 0.0;
  copy(&result, total, sizeof result, CopyKind::kDeviceToHost, device_);  // waits
  return result;
}

namespace {
// acc: one f64 on the backend's GPU.
double* accumulator(const CudaBackend& be, const char* op, Tensor& acc) {
  ops::check_tensor(be, op, "acc", acc, DType::kF64);
  PENG_CHECK(acc.numel() == 1, op, ": acc must hold one value, got ", acc.str());
  return acc.data<double>();
}
}  // namespace

void CudaBackend::sum_squares_into(const Tensor& x, Tensor& acc) {
  double* out = accumulator(*this, "sum_squares_into", acc);
  ops::check_tensor(*this, "sum_squares_into", "x", x);
  CudaLaunch launch(device_);
  kernels::sum_squares_into(launch, x.data<const float>(), x.numel(), out);
}

void CudaBackend::sum_into(const Tensor& x, Tensor& acc) {
  double* out = accumulator(*this, "sum_into", acc);
  ops::check_tensor(*this, "sum_into", "x", x);
  CudaLaunch launch(device_);
  kernels::sum_into(launch, x.data<const float>(), x.numel(), out);
}

}  // namespace peng::cuda
