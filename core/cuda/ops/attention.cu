// CudaBackend::attention_forward/backward (the exact path, probabilities saved): the CPU
// backend's checks, then kernels/attention.cuh.
#include <cstdint>

#include "peng/core/cuda/kernels/attention.cuh"
#include "peng/core/cuda/launch.cuh"
#include "peng/core/cuda/ops/checks.h"

namespace peng::cuda {
namespace {

using checks::QkvDims;

// The CPU backend's check_qkv (core/op_checks.h) and attention_dims: qkv (f32, 3-D) with
// H + 2K dividing its last dimension, n_head a positive multiple of n_kv_head, and the sizes
// in the kernels' int range (the CPU's BLAS range); the grid of one block per (b, head, row)
// must fit a launch.
QkvDims check_qkv(const CudaBackend& be, const char* op, const Tensor& qkv, int n_head,
                  int n_kv_head) {
  const QkvDims d = checks::check_qkv(be.device(), op, qkv, n_head, n_kv_head);
  PENG_CHECK(qkv.dim(2) <= INT32_MAX && d.t <= INT32_MAX, op, ": qkv ", qkv.str(),
             " exceeds the BLAS int range");
  PENG_CHECK(d.b * d.h * d.t <= INT32_MAX, op, ": qkv ", qkv.str(), " with ", n_head,
             " heads needs more than 2^31 - 1 blocks");
  return d;
}

kernels::AttDims att_dims(const QkvDims& d) { return {int(d.t), int(d.h), int(d.k), int(d.hd)}; }

}  // namespace

void CudaBackend::attention_forward(const Tensor& qkv, int n_head, int n_kv_head, Tensor& out,
                                    Tensor& att) {
  const char* op = "attention_forward";
  const QkvDims d = check_qkv(*this, op, qkv, n_head, n_kv_head);
  const int64_t C = d.h * d.hd;  // out's channels
  ops::check_shape(*this, op, "out", out, {d.b, d.t, C});
  ops::check_shape(*this, op, "att", att, {d.b, d.h, d.t, d.t});
  ops::check_no_overlap(op, "out", out, "qkv", qkv);
  ops::check_no_overlap(op, "att", att, "qkv", qkv);
  ops::check_no_overlap(op, "att", att, "out", out);
  if (d.b == 0 || d.t == 0 || d.hd == 0) return;
  CudaLaunch launch(device_);
  kernels::attention_forward(launch, qkv.data<const float>(), d.b, att_dims(d), out.data<float>(),
                             att.data<float>());
}

void CudaBackend::attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& att,
                                     int n_head, int n_kv_head, Tensor& dqkv) {
  const char* op = "attention_backward";
  const QkvDims d = check_qkv(*this, op, qkv, n_head, n_kv_head);
  const int64_t C = d.h * d.hd;  // dout's channels
  ops::check_shape(*this, op, "dout", dout, {d.b, d.t, C});
  ops::check_shape(*this, op, "att", att, {d.b, d.h, d.t, d.t});
  ops::check_shape(*this, op, "dqkv", dqkv, qkv.shape());
  ops::check_no_overlap(op, "dqkv", dqkv, "qkv", qkv);
  ops::check_no_overlap(op, "dqkv", dqkv, "dout", dout);
  ops::check_no_overlap(op, "dqkv", dqkv, "att", att);
  if (d.b == 0 || d.t == 0 || d.hd == 0) return;
  CudaLaunch launch(device_);
  kernels::attention_backward(launch, dout.data<const float>(), qkv.data<const float>(),
                              att.data<const float>(), d.b, att_dims(d), dqkv.data<float>());
}

// Every product runs over the pairs j <= t only: T (T + 1) / 2 of the T^2 square.
double CudaBackend::attention_work_fraction(int64_t seq_len) const {
  if (seq_len <= 0) return 1.0;
  return (double(seq_len) + 1.0) / (2.0 * double(seq_len));
}

}  // namespace peng::cuda
