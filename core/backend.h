// Backend: the compute ops peng's models and optimizers are built from.
//
// One virtual per op family, forward and backward side by side. Every op works on
// contiguous f32 tensors resident on the backend's device unless stated otherwise
// (token ids are i32). Shapes use B = batch, T = time, C = channels, H = heads,
// Vp = padded vocabulary, N = any number of rows.
//
// Gradient convention: backward ops ADD into parameter gradients (dW, db, dwte, ...),
// so gradients accumulate over micro-batches; they OVERWRITE activation gradients
// (dx) unless the op says otherwise.
//
// Ops are grouped by family; every virtual has a default that throws peng::Error naming the
// op and the backend ("backend cpu has no op rope_forward"), so a backend implements the
// families it supports and still compiles (MLX's no_gpu stubs). Never a silent fallback.
#pragma once

#include <memory>

#include "peng/core/tensor.h"

namespace peng {

struct MatmulOptions {
  bool trans_a = false;
  bool trans_b = false;
  float alpha = 1.0f;
  float beta = 0.0f;  // out = alpha * op(a) @ op(b) + beta * out
};

// How a linear layer's weight is stored: Hugging Face GPT-2's Conv1D (in, out), y = x W + b,
// or torch.nn.Linear's (out, in), y = x W^T + b (Llama, Qwen).
enum class WeightLayout { kInOut, kOutIn };

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: p -= lr * weight_decay * p
  int64_t step = 1;           // 1-based, for bias correction
};

// The scalars of one AdamW step (adamw_update below): bc1 = 1 - b1^t, bc2 = 1 - b2^t,
// decay = 1 - lr*wd, w1 = 1 - b1, w2 = 1 - b2, step_size = lr / bc1, bc2_sqrt = sqrt(bc2),
// computed in double (as Python does) and rounded to f32 once. Every backend uses these.
struct AdamWScalars {
  float decay, w1, b2, w2, step_size, bc2_sqrt, eps;
};
AdamWScalars adamw_scalars(const AdamWOptions& opt);

// How a Mixture-of-Experts router turns logits into a choice of experts (moe_route below).
struct MoeRouting {
  int topk = 1;            // experts per token
  bool sigmoid = false;    // scores = sigmoid(logits) (DeepSeek-V3), else softmax(logits)
  bool norm_topk = false;  // the chosen scores are divided by their sum
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual const char* name() const = 0;

  // ---- matmul ----
  // 2-D: a (M, K) [or (K, M) if trans_a], b (K, N) [or (N, K) if trans_b] -> out (M, N).
  // 3-D: the same per batch index; a, b, out all carry the leading batch dimension.
  virtual void matmul(const Tensor& a, const Tensor& b, Tensor& out, const MatmulOptions& opt = {});

  // ---- linear: y = x W + bias (kInOut, w (Cin, Cout)) or x W^T + bias (kOutIn, w (Cout, Cin))
  // ---- x (N, Cin), bias (Cout) or undefined -> y (N, Cout)
  virtual void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                              WeightLayout layout = WeightLayout::kInOut);
  // dy (N, Cout) -> dx (N, Cin) overwritten (skipped if undefined); dw (w's shape) +=;
  // dbias (Cout) += (skipped if undefined).
  virtual void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx,
                               Tensor& dw, Tensor& dbias,
                               WeightLayout layout = WeightLayout::kInOut);

  // ---- layernorm over the last dimension ----
  // x (N, C), w (C), b (C) -> y (N, C); mean (N), rstd (N) saved for backward.
  virtual void layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps,
                                 Tensor& y, Tensor& mean, Tensor& rstd);
  // dy (N, C) -> dx (N, C) ADDED INTO (residual stream convention); dw, db (C) +=.
  virtual void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                  const Tensor& mean, const Tensor& rstd, Tensor& dx, Tensor& dw,
                                  Tensor& db);

  // ---- GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ----
  virtual void gelu_forward(const Tensor& x, Tensor& y);
  // dx = dy * gelu'(x); dx may alias dy.
  virtual void gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx);

  // ---- RMSNorm over the last dimension: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) ----
  // x (N, C), w (C) -> y (N, C); rstd (N) saved for backward.
  virtual void rmsnorm_forward(const Tensor& x, const Tensor& w, float eps, Tensor& y,
                               Tensor& rstd);
  // dy (N, C) -> dx (N, C) ADDED INTO (residual stream convention); dw (C) +=.
  virtual void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                const Tensor& rstd, Tensor& dx, Tensor& dw);

  // ---- SwiGLU: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)) ----
  // gate_up (N, 2F) laid out [gate | up] -> out (N, F).
  virtual void swiglu_forward(const Tensor& gate_up, Tensor& out);
  // dout (N, F) -> dgate_up (N, 2F) overwritten.
  virtual void swiglu_backward(const Tensor& dout, const Tensor& gate_up, Tensor& dgate_up);

  // ---- fused grouped-query qkv: (B, T, (H + 2K) * hd) = [q | k | v] ----
  // Query head h at columns h*hd, key head g at (H + g)*hd, value head g at (H + K + g)*hd;
  // query head h attends with kv head h / (H / K) (H divisible by K; K = H is multi-head
  // attention, where the layout is GPT-2's (B, T, 3C)). hd = qkv.dim(2) / (H + 2K).

  // Per-head RMSNorm of the query and key heads (Qwen3's q_norm / k_norm): query heads with
  // wq (hd), key heads with wk (hd), value heads copied. qkv -> out (same shape), rstd
  // (B*T, H + K) saved for backward.
  virtual void qk_norm_forward(const Tensor& qkv, int n_head, int n_kv_head, const Tensor& wq,
                               const Tensor& wk, float eps, Tensor& out, Tensor& rstd);
  // dout (like qkv) -> dqkv overwritten (may alias dout; value heads copied); dwq, dwk +=.
  virtual void qk_norm_backward(const Tensor& dout, const Tensor& qkv, int n_head, int n_kv_head,
                                const Tensor& wq, const Tensor& wk, const Tensor& rstd,
                                Tensor& dqkv, Tensor& dwq, Tensor& dwk);

  // Rotary position embedding, Hugging Face "rotate_half" form, IN PLACE on the first
  // `n_rot` heads of x (B, T, G * hd) (the q and k heads of a fused qkv: n_rot = H + K of
  // G = H + 2K): with x1 = x[..., :hd/2], x2 = x[..., hd/2:] of a head at position t,
  //   x1' = x1 cos[t] - x2 sin[t],  x2' = x2 cos[t] + x1 sin[t]
  // cos, sin (Tmax >= T, hd/2): the angles t * inv_freq[i] (the caller's frequency rule).
  virtual void rope_forward(Tensor& x, int n_heads, int n_rot, const Tensor& cos,
                            const Tensor& sin);
  // The transposed (inverse) rotation, in place: the gradient of rope_forward.
  virtual void rope_backward(Tensor& dx, int n_heads, int n_rot, const Tensor& cos,
                             const Tensor& sin);

  // ---- causal self-attention over a fused qkv (layout above) ----
  // out (B, T, H*hd) = concat_h softmax(q_h k_{g(h)}^T / sqrt(hd) + causal mask) v_{g(h)}.
  // att (B, H, T, T) saves the probabilities (upper triangle unspecified).
  virtual void attention_forward(const Tensor& qkv, int n_head, int n_kv_head, Tensor& out,
                                 Tensor& att);
  // dout (B, T, H*hd) -> dqkv (like qkv) overwritten (a kv head's gradient sums over the
  // query heads of its group).
  virtual void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& att,
                                  int n_head, int n_kv_head, Tensor& dqkv);
  // Multi-head attention (K = H): qkv (B, T, 3C), out (B, T, C).
  void attention_forward(const Tensor& qkv, int n_head, Tensor& out, Tensor& att) {
    attention_forward(qkv, n_head, n_head, out, att);
  }
  void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& att, int n_head,
                          Tensor& dqkv) {
    attention_backward(dout, qkv, att, n_head, n_head, dqkv);
  }
  // The share of the T x T score and value products the two calls above execute (1: the
  // full square; a kernel that skips masked blocks does less). Hardware FLOPs use it.
  virtual double attention_work_fraction(int64_t seq_len) const;

  // ---- token + position embedding ----
  // tokens (B, T) i32, wte (Vp, C), wpe (Tmax >= T, C) -> out (B, T, C) = wte[tok] + wpe[t]
  // (a model without position embedding uses the shard form below with vocab_begin 0).
  virtual void embedding_forward(const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                                 Tensor& out);
  // dout (B, T, C) -> dwte (Vp, C) +=, dwpe (Tmax, C) += (rows 0..T-1).
  virtual void embedding_backward(const Tensor& dout, const Tensor& tokens, Tensor& dwte,
                                  Tensor& dwpe);

  // ---- fused softmax + cross-entropy over the first `vocab` of Vp columns ----
  // logits (N, Vp), targets (N) i32 in [0, vocab) -> losses (N) = -log softmax(logits)[target].
  // Columns >= vocab (padding) are excluded from the softmax.
  virtual void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                                     Tensor& losses);
  // dlogits (N, Vp) = dloss * (softmax(logits) - onehot(target)), 0 in padded columns.
  // dlogits may alias logits (the usual case: the logits buffer is reused).
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                                      float dloss, Tensor& dlogits);

  // ---- vocabulary-parallel embedding and cross-entropy (tensor parallelism) ----
  // A shard holds vocabulary rows (wte) or logit columns [vocab_begin, vocab_begin + Vl); of
  // those, the first `valid` are real tokens (the rest is padding). Summed over the shards
  // of a tensor-parallel group these reproduce the unsharded ops above.
  // out (B, T, C) = wte_shard[tok - vocab_begin] for tokens in the shard, else 0, plus
  // wpe[t] when wpe is defined (pass it on one shard only).
  virtual void embedding_forward_shard(const Tensor& tokens, const Tensor& wte_shard,
                                       int64_t vocab_begin, const Tensor& wpe, Tensor& out);
  // dwte_shard += dout rows of tokens in the shard; dwpe += dout when defined.
  virtual void embedding_backward_shard(const Tensor& dout, const Tensor& tokens,
                                        int64_t vocab_begin, Tensor& dwte_shard, Tensor& dwpe);
  // logits (N, Vl) -> row_max (N): max over the valid columns (-inf when there are none).
  virtual void cross_entropy_shard_max(const Tensor& logits, int64_t valid, Tensor& row_max);
  // -> stats (N, 2): [sum over valid columns of exp(l - row_max), l[target - vocab_begin]
  // when the target is in the shard else 0]. With the group's max and these summed over
  // the group, loss = log(sum) + max - target_logit.
  virtual void cross_entropy_shard_sums(const Tensor& logits, const Tensor& targets,
                                        int64_t vocab_begin, int64_t valid, const Tensor& row_max,
                                        Tensor& stats);
  // dlogits (N, Vl) = dloss * (exp(l - row_max) / stats[:, 0] - [column is the target]) on
  // valid columns, 0 on padding, with the group's row_max and summed stats. May alias logits.
  virtual void cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets,
                                            int64_t vocab_begin, int64_t valid,
                                            const Tensor& row_max, const Tensor& stats, float dloss,
                                            Tensor& dlogits);

  // ---- elementwise ----
  // out = a + b (same shape); out may alias a or b.
  virtual void add(const Tensor& a, const Tensor& b, Tensor& out);
  // x *= s
  virtual void scale(Tensor& x, float s);
  // y = x converted, same shape: f32 -> bf16 (round to nearest even, NaN stays NaN: bit for
  // bit core/dtype.h's f32_to_bf16) or bf16 -> f32 (exact).
  virtual void cast(const Tensor& x, Tensor& y);

  // ---- Mixture of Experts: routing, and moving token rows to experts and back ----
  // Per token (row) of logits (N, E), with bias (E) that only selects:
  //   scores (N, E) = softmax(logits) or sigmoid(logits)
  //   chosen (N, k) i32 = the k experts of largest scores + bias, in decreasing order
  //                       (ties: the lower expert index first)
  //   weights (N, k) = scores at chosen (divided by their sum with norm_topk)
  //   prob_sums (E) f64 = sum over the rows of scores / (the row's sum of scores)
  virtual void moe_route(const Tensor& logits, const Tensor& bias, const MoeRouting& r,
                         Tensor& scores, Tensor& chosen, Tensor& weights, Tensor& prob_sums);
  // dweights (N, k) and aux (E), the gradient of the loss with respect to each row's
  // scores / (sum of scores) (the balance loss's), -> dlogits (N, E) overwritten.
  virtual void moe_route_backward(const Tensor& dweights, const Tensor& scores,
                                  const Tensor& chosen, const Tensor& aux, const MoeRouting& r,
                                  Tensor& dlogits);
  // out (M, C) row i = weight[i] * x[index[i]]; x (N, C), index (M) i32 in [0, N), weight (M)
  // or undefined (1).
  virtual void gather_rows(const Tensor& x, const Tensor& index, const Tensor& weight, Tensor& out);
  // out (N, C) row index[i] += weight[i] * src[i] for i = 0, 1, ... in that order (a row's
  // sum is deterministic); src (M, C), weight (M) or undefined (1).
  virtual void scatter_add_rows(const Tensor& src, const Tensor& index, const Tensor& weight,
                                Tensor& out);
  // out (M) = the dot product of row i of a and of b (M, C), accumulated in double.
  virtual void rows_dot(const Tensor& a, const Tensor& b, Tensor& out);

  // ---- optimizer ----
  // One AdamW step on a flat parameter range, PyTorch semantics:
  //   p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  //   p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
  virtual void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                            const AdamWOptions& opt);
  // Sum of squares of all elements, accumulated in double (for global L2 norms). Waits for
  // the device: prefer sum_squares_into inside a step.
  virtual double sum_squares(const Tensor& x);
  // acc (1) f64 on this backend's device += sum of squares of x's elements (double
  // accumulation, fixed order: deterministic). Queued without waiting for the device, so a
  // step reads one accumulated value instead of one per tensor.
  virtual void sum_squares_into(const Tensor& x, Tensor& acc);
  // acc (1) f64 += sum of x's elements (f32 x; double accumulation, fixed order).
  virtual void sum_into(const Tensor& x, Tensor& acc);

 protected:
  // The error of an op this backend does not implement: "backend NAME has no op OP".
  [[noreturn]] void missing(const char* op) const;
};

// The CPU backend (OpenBLAS + OpenMP). One shared instance.
Backend& cpu_backend();
// The backend of `device`: cpu_backend() or the CUDA backend of that GPU (one instance per
// GPU, core/cuda/cuda_backend.h); peng::Error when this build or machine has no such GPU.
Backend& backend_for(Device device);

}  // namespace peng
