// CudaBackend: the Backend ops on one NVIDIA GPU.
//
// Matrix products go through cuBLASLt (ops/matmul.cu); the other ops are peng's own kernels,
// whose bodies live in kernels/*.cuh (plain CUDA that g++ also compiles, so tests run them on
// the CPU under an emulation of the CUDA execution model, tests/cuda_emu) and whose launches
// live in ops/*.cu, one file per op family like the CPU backend:
//   ops/matmul.cu         matmul, linear_forward/backward (cuBLASLt, bias epilogues)
//   ops/layernorm.cu      layernorm_forward/backward
//   ops/rmsnorm.cu        rmsnorm_forward/backward, qk_norm_forward/backward
//   ops/pointwise.cu      gelu, swiglu, rope, add, scale
//   ops/attention.cu      attention_forward/backward (exact fp32: probabilities saved)
//   ops/embedding.cu      embedding_forward/backward (whole table and vocabulary shard)
//   ops/cross_entropy.cu  cross_entropy_* (whole vocabulary and shard)
//   ops/optimizer.cu      adamw_update, sum_squares(_into), sum_into
//
// Contract: every tensor an op touches lives on this backend's GPU; every op is queued on
// the device's one stream (cuda::stream) and returns without waiting for the GPU, except
// sum_squares, whose double result the host reads. Reductions are deterministic: no
// floating-point atomics, so two runs from the same inputs are bit-identical. fp32 runs
// with TF32 off (comparable with the CPU backend).
#pragma once

#include "peng/core/backend.h"

namespace peng::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::cuda(device_); }
  const char* name() const override { return "cuda"; }
  int index() const { return device_; }

  // Each op family's overrides are declared here as its ops/*.cu lands; an op not declared
  // yet is Backend's default: a clear "backend cuda has no op ..." error.
  void layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y,
                         Tensor& mean, Tensor& rstd) override;
  void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd, Tensor& dx, Tensor& dw, Tensor& db) override;

  // ops/matmul.cu (cuBLASLt)
  void matmul(const Tensor& a, const Tensor& b, Tensor& out,
              const MatmulOptions& opt = {}) override;
  void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                      WeightLayout layout = WeightLayout::kInOut) override;
  void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx, Tensor& dw,
                       Tensor& dbias, WeightLayout layout = WeightLayout::kInOut) override;

  // ops/attention.cu (exact: probabilities saved)
  using Backend::attention_backward;
  using Backend::attention_forward;
  void attention_forward(const Tensor& qkv, int n_head, int n_kv_head, Tensor& out,
                         Tensor& att) override;
  void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& att, int n_head,
                          int n_kv_head, Tensor& dqkv) override;
  double attention_work_fraction(int64_t seq_len) const override;

  // ops/rmsnorm.cu
  void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y,
                       Tensor& rstd) override;
  void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                        Tensor& dx, Tensor& dw) override;
  void qk_norm_forward(const Tensor& qkv, int n_head, int n_kv_head, const Tensor& wq,
                       const Tensor& wk, float eps, Tensor& out, Tensor& rstd) override;
  void qk_norm_backward(const Tensor& dout, const Tensor& qkv, int n_head, int n_kv_head,
                        const Tensor& wq, const Tensor& wk, const Tensor& rstd, Tensor& dqkv,
                        Tensor& dwq, Tensor& dwk) override;

  // ops/pointwise.cu
  void gelu_forward(const Tensor& x, Tensor& y) override;
  void gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) override;
  void swiglu_forward(const Tensor& gate_up, Tensor& out) override;
  void swiglu_backward(const Tensor& dout, const Tensor& gate_up, Tensor& dgate_up) override;
  void rope_forward(Tensor& x, int n_heads, int n_rot, const Tensor& cos,
                    const Tensor& sin) override;
  void rope_backward(Tensor& dx, int n_heads, int n_rot, const Tensor& cos,
                     const Tensor& sin) override;
  void add(const Tensor& a, const Tensor& b, Tensor& out) override;
  void scale(Tensor& x, float s) override;
  void cast(const Tensor& x, Tensor& y) override;

  // ops/embedding.cu
  void embedding_forward(const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                         Tensor& out) override;
  void embedding_backward(const Tensor& dout, const Tensor& tokens, Tensor& dwte,
                          Tensor& dwpe) override;
  void embedding_forward_shard(const Tensor& tokens, const Tensor& wte_shard, int64_t vocab_begin,
                               const Tensor& wpe, Tensor& out) override;
  void embedding_backward_shard(const Tensor& dout, const Tensor& tokens, int64_t vocab_begin,
                                Tensor& dwte_shard, Tensor& dwpe) override;

  // ops/cross_entropy.cu
  void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                             Tensor& losses) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                              float dloss, Tensor& dlogits) override;
  void cross_entropy_shard_max(const Tensor& logits, int64_t valid, Tensor& row_max) override;
  void cross_entropy_shard_sums(const Tensor& logits, const Tensor& targets, int64_t vocab_begin,
                                int64_t valid, const Tensor& row_max, Tensor& stats) override;
  void cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets,
                                    int64_t vocab_begin, int64_t valid, const Tensor& row_max,
                                    const Tensor& stats, float dloss, Tensor& dlogits) override;

  // ops/optimizer.cu
  void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                    const AdamWOptions& opt) override;
  double sum_squares(const Tensor& x) override;
  void sum_squares_into(const Tensor& x, Tensor& acc) override;
  void sum_into(const Tensor& x, Tensor& acc) override;

  // The cuBLASLt handle and its workspace (ops/matmul.cu); created with the backend.
  void* lt_handle() const { return lt_handle_; }

 private:
  int device_;
  void* lt_handle_ = nullptr;  // cublasLtHandle_t
};

// The CUDA backend of GPU `device` (one instance per GPU, created on first use).
CudaBackend& backend(int device);

}  // namespace peng::cuda
