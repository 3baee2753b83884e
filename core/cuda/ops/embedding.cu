// CudaBackend::embedding_forward/backward and their vocabulary-shard forms: the CPU backend's
// checks (core/cpu/embedding.cc), then kernels/embedding.cuh.
//
// The CPU backend's whole-table ops also reject token ids outside [0, Vp) before writing
// anything. Here the ids are on the device and reading them would wait for the GPU, so the
// host-side check is the data loader's (TokenStream::read checks every id < vocab <= Vp
// before BatchReader uploads a batch); the kernels treat an id outside the table as
// "not in this shard" (zero row forward, skipped backward) and never touch memory outside
// the tables.
#include <climits>

#include "peng/core/cuda/kernels/embedding.cuh"
#include "peng/core/cuda/launch.cuh"
#include "peng/core/cuda/ops/checks.h"

namespace peng::cuda {
namespace {

// Sizes the kernels index with int (channels) and the grid with unsigned (rows).
void check_sizes(const char* op, int64_t rows, int64_t C) {
  PENG_CHECK(C <= INT_MAX && rows <= INT_MAX, op, ": ", rows, " rows of ", C,
             " channels exceed the CUDA kernels' index range");
}

}  // namespace

void CudaBackend::embedding_forward(const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                                    Tensor& out) {
  const char* op = "embedding_forward";
  ops::check_tensor(*this, op, "tokens", tokens, DType::kI32);
  ops::check_tensor(*this, op, "wte", wte);
  PENG_CHECK(wpe.defined(), op, ": wpe is required");
  PENG_CHECK(tokens.ndim() == 2 && wte.ndim() == 2, op, ": tokens (B, T) and wte (Vp, C), got ",
             tokens.str(), " and ", wte.str());
  embedding_forward_shard(tokens, wte, 0, wpe, out);
}

void CudaBackend::embedding_backward(const Tensor& dout, const Tensor& tokens, Tensor& dwte,
                                     Tensor& dwpe) {
  const char* op = "embedding_backward";
  ops::check_tensor(*this, op, "tokens", tokens, DType::kI32);
  ops::check_tensor(*this, op, "dwte", dwte);
  PENG_CHECK(dwpe.defined(), op, ": dwpe is required");
  PENG_CHECK(tokens.ndim() == 2 && dwte.ndim() == 2, op, ": tokens (B, T) and dwte (Vp, C), got ",
             tokens.str(), " and ", dwte.str());
  embedding_backward_shard(dout, tokens, 0, dwte, dwpe);
}

void CudaBackend::embedding_forward_shard(const Tensor& tokens, const Tensor& wte_shard,
                                          int64_t vocab_begin, const Tensor& wpe, Tensor& out) {
  const char* op = "embedding_forward_shard";
  ops::check_tensor(*this, op, "tokens", tokens, DType::kI32);
  ops::check_tensor(*this, op, "wte_shard", wte_shard);
  PENG_CHECK(tokens.ndim() == 2 && wte_shard.ndim() == 2, op,
             ": tokens (B, T) and wte (Vl, C), got ", tokens.str(), " and ", wte_shard.str());
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = wte_shard.dim(1), vl = wte_shard.dim(0);
  if (wpe.defined()) {
    ops::check_tensor(*this, op, "wpe", wpe);
    PENG_CHECK(wpe.ndim() == 2 && wpe.dim(1) == C && wpe.dim(0) >= T, op, ": wpe ", wpe.str(),
               " does not fit (T = ", T, ", C = ", C, ")");
  }
  ops::check_shape(*this, op, "out", out, {B, T, C});
  check_sizes(op, B * T, C);
  CudaLaunch launch(device_);
  kernels::embedding_forward(launch, tokens.data<const int32_t>(), wte_shard.data<const float>(),
                             vocab_begin, vl, wpe.defined() ? wpe.data<const float>() : nullptr, B,
                             T, int(C), out.data<float>());
}

void CudaBackend::embedding_backward_shard(const Tensor& dout, const Tensor& tokens,
                                           int64_t vocab_begin, Tensor& dwte_shard, Tensor& dwpe) {
  const char* op = "embedding_backward_shard";
  ops::check_tensor(*this, op, "tokens", tokens, DType::kI32);
  ops::check_tensor(*this, op, "dwte_shard", dwte_shard);
  PENG_CHECK(tokens.ndim() == 2 && dwte_shard.ndim() == 2, op,
             ": tokens (B, T) and dwte (Vl, C), got ", tokens.str(), " and ", dwte_shard.str());
  const int64_t B = tokens.dim(0), T = tokens.dim(1), C = dwte_shard.dim(1);
  const int64_t vl = dwte_shard.dim(0);
  ops::check_shape(*this, op, "dout", dout, {B, T, C});
  if (dwpe.defined()) {
    ops::check_tensor(*this, op, "dwpe", dwpe);
    PENG_CHECK(dwpe.ndim() == 2 && dwpe.dim(1) == C && dwpe.dim(0) >= T, op, ": dwpe ", dwpe.str(),
               " does not fit (T = ", T, ", C = ", C, ")");
  }
  check_sizes(op, B * T, C);
  CudaLaunch launch(device_);
  kernels::embedding_backward(launch, dout.data<const float>(), tokens.data<const int32_t>(), B, T,
                              int(C), vocab_begin, vl, dwte_shard.data<float>(),
                              dwpe.defined() ? dwpe.data<float>() : nullptr);
}

}  // namespace peng::cuda
