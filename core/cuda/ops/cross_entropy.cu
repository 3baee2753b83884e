// CudaBackend::cross_entropy_* (whole vocabulary and vocabulary shard): the CPU backend's
// checks (core/cpu/cross_entropy.cc), then kernels/cross_entropy.cuh.
//
// The CPU backend also rejects targets outside [0, vocab). Here the targets are on the
// device and reading them would wait for the GPU, so the host-side check is the data
// loader's (TokenStream::read checks every id < vocab before BatchReader uploads a batch);
// a bad target that gets through anyway gives a NaN loss and gradient row, never an access
// outside the row (kernels/cross_entropy.cuh).
#include <climits>

#include "peng/core/cuda/kernels/cross_entropy.cuh"
#include "peng/core/cuda/launch.cuh"
#include "peng/core/cuda/ops/checks.h"

namespace peng::cuda {
namespace {

struct Dims {
  int64_t n, cols;  // rows and columns of logits (N, Vp) or (N, Vl)
};

// logits f32 (N, cols) with every leading dimension flattened; rows fit a grid.
Dims logits_dims(const CudaBackend& be, const char* op, const Tensor& logits, const char* shape) {
  ops::check_tensor(be, op, "logits", logits);
  PENG_CHECK(logits.ndim() >= 1, op, ": logits must be ", shape, ", got ", logits.str());
  const int64_t cols = logits.dim(-1);
  const Dims d{cols == 0 ? 0 : logits.numel() / cols, cols};
  PENG_CHECK(d.n <= INT_MAX, op, ": ", d.n, " rows exceed the CUDA kernels' grid");
  return d;
}

Dims ce_dims(const CudaBackend& be, const char* op, const Tensor& logits, const Tensor& targets,
             int64_t vocab) {
  const Dims d = logits_dims(be, op, logits, "(N, Vp)");
  ops::check_tensor(be, op, "targets", targets, DType::kI32);
  PENG_CHECK(vocab > 0 && vocab <= d.cols, op, ": vocab ", vocab, " must be in [1, Vp = ", d.cols,
             "] for logits ", logits.str());
  PENG_CHECK(targets.numel() == d.n, op, ": targets ", targets.str(),
             " must hold one id per row of logits ", logits.str());
  return d;
}

Dims shard_dims(const CudaBackend& be, const char* op, const Tensor& logits, int64_t valid) {
  const Dims d = logits_dims(be, op, logits, "(N, Vl)");
  PENG_CHECK(valid >= 0 && valid <= d.cols, op, ": valid ", valid, " outside [0, ", d.cols, "]");
  return d;
}

// ... and the per-row inputs of the sums and backward passes.
Dims shard_dims(const CudaBackend& be, const char* op, const Tensor& logits, int64_t valid,
                const Tensor& targets, const Tensor& row_max, const Tensor& stats) {
  const Dims d = shard_dims(be, op, logits, valid);
  ops::check_tensor(be, op, "targets", targets, DType::kI32);
  PENG_CHECK(targets.numel() == d.n, op, ": targets ", targets.str(), " for ", d.n, " rows");
  ops::check_shape(be, op, "row_max", row_max, {d.n});
  ops::check_shape(be, op, "stats", stats, {d.n, 2});
  return d;
}

}  // namespace

void CudaBackend::cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                                        Tensor& losses) {
  const char* op = "cross_entropy_forward";
  const Dims d = ce_dims(*this, op, logits, targets, vocab);
  ops::check_tensor(*this, op, "losses", losses);
  PENG_CHECK(losses.numel() == d.n, op, ": losses ", losses.str(),
             " must hold one value per row of logits ", logits.str());
  CudaLaunch launch(device_);
  kernels::cross_entropy_forward(launch, logits.data<const float>(), targets.data<const int32_t>(),
                                 d.n, d.cols, vocab, losses.data<float>());
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                                         float dloss, Tensor& dlogits) {
  const char* op = "cross_entropy_backward";
  const Dims d = ce_dims(*this, op, logits, targets, vocab);
  ops::check_shape(*this, op, "dlogits", dlogits, logits.shape());
  CudaLaunch launch(device_);
  kernels::cross_entropy_backward(launch, logits.data<const float>(), targets.data<const int32_t>(),
                                  d.n, d.cols, vocab, dloss, dlogits.data<float>());
}

void CudaBackend::cross_entropy_shard_max(const Tensor& logits, int64_t valid, Tensor& row_max) {
  const char* op = "cross_entropy_shard_max";
  const Dims d = shard_dims(*this, op, logits, valid);
  ops::check_shape(*this, op, "row_max", row_max, {d.n});
  CudaLaunch launch(device_);
  kernels::cross_entropy_shard_max(launch, logits.data<const float>(), d.n, d.cols, valid,
                                   row_max.data<float>());
}

void CudaBackend::cross_entropy_shard_sums(const Tensor& logits, const Tensor& targets,
                                           int64_t vocab_begin, int64_t valid,
                                           const Tensor& row_max, Tensor& stats) {
  const char* op = "cross_entropy_shard_sums";
  const Dims d = shard_dims(*this, op, logits, valid, targets, row_max, stats);
  CudaLaunch launch(device_);
  kernels::cross_entropy_shard_sums(launch, logits.data<const float>(),
                                    targets.data<const int32_t>(), d.n, d.cols, vocab_begin, valid,
                                    row_max.data<const float>(), stats.data<float>());
}

void CudaBackend::cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets,
                                               int64_t vocab_begin, int64_t valid,
                                               const Tensor& row_max, const Tensor& stats,
                                               float dloss, Tensor& dlogits) {
  const char* op = "cross_entropy_shard_backward";
  const Dims d = shard_dims(*this, op, logits, valid, targets, row_max, stats);
  ops::check_shape(*this, op, "dlogits", dlogits, logits.shape());
  CudaLaunch launch(device_);
  kernels::cross_entropy_shard_backward(
      launch, logits.data<const float>(), targets.data<const int32_t>(), d.n, d.cols, vocab_begin,
      valid, row_max.data<const float>(), stats.data<const float>(), dloss, dlogits.data<float>());
}

}  // namespace peng::cuda
