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
// A backend that lacks an op throws peng::Error naming it (never a silent fallback).
#pragma once

#include <memory>

#include "core/tensor.h"

namespace peng {

struct MatmulOptions {
  bool trans_a = false;
  bool trans_b = false;
  float alpha = 1.0f;
  float beta = 0.0f;  // out = alpha * op(a) @ op(b) + beta * out
};

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: p -= lr * weight_decay * p
  int64_t step = 1;           // 1-based, for bias correction
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual const char* name() const = 0;

  // ---- matmul ----
  // 2-D: a (M, K) [or (K, M) if trans_a], b (K, N) [or (N, K) if trans_b] -> out (M, N).
  // 3-D: the same per batch index; a, b, out all carry the leading batch dimension.
  virtual void matmul(const Tensor& a, const Tensor& b, Tensor& out,
                      const MatmulOptions& opt = {}) = 0;

  // ---- linear (Conv1D layout, y = x @ w + bias) ----
  // x (N, Cin), w (Cin, Cout), bias (Cout) or undefined -> y (N, Cout)
  virtual void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) = 0;
  // dy (N, Cout) -> dx (N, Cin) overwritten (skipped if undefined); dw (Cin, Cout) +=;
  // dbias (Cout) += (skipped if undefined).
  virtual void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor& dx,
                               Tensor& dw, Tensor& dbias) = 0;

  // ---- layernorm over the last dimension ----
  // x (N, C), w (C), b (C) -> y (N, C); mean (N), rstd (N) saved for backward.
  virtual void layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, float eps,
                                 Tensor& y, Tensor& mean, Tensor& rstd) = 0;
  // dy (N, C) -> dx (N, C) ADDED INTO (residual stream convention); dw, db (C) +=.
  virtual void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                  const Tensor& mean, const Tensor& rstd, Tensor& dx, Tensor& dw,
                                  Tensor& db) = 0;

  // ---- GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ----
  virtual void gelu_forward(const Tensor& x, Tensor& y) = 0;
  // dx = dy * gelu'(x); dx may alias dy.
  virtual void gelu_backward(const Tensor& dy, const Tensor& x, Tensor& dx) = 0;

  // ---- causal multi-head self-attention ----
  // qkv (B, T, 3C) laid out [q | k | v], each C = H * hd with head h at columns h*hd.
  // out (B, T, C) = concat_h softmax(q_h k_h^T / sqrt(hd) + causal mask) v_h.
  // att (B, H, T, T) saves the probabilities (upper triangle unspecified).
  virtual void attention_forward(const Tensor& qkv, int n_head, Tensor& out, Tensor& att) = 0;
  // dout (B, T, C) -> dqkv (B, T, 3C) overwritten.
  virtual void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& att,
                                  int n_head, Tensor& dqkv) = 0;
  // The share of the T x T score and value products the two calls above execute (1: the
  // full square; a kernel that skips masked blocks does less). Hardware FLOPs use it.
  virtual double attention_work_fraction(int64_t seq_len) const = 0;

  // ---- token + position embedding ----
  // tokens (B, T) i32, wte (Vp, C), wpe (Tmax >= T, C) -> out (B, T, C) = wte[tok] + wpe[t]
  virtual void embedding_forward(const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                                 Tensor& out) = 0;
  // dout (B, T, C) -> dwte (Vp, C) +=, dwpe (Tmax, C) += (rows 0..T-1).
  virtual void embedding_backward(const Tensor& dout, const Tensor& tokens, Tensor& dwte,
                                  Tensor& dwpe) = 0;

  // ---- fused softmax + cross-entropy over the first `vocab` of Vp columns ----
  // logits (N, Vp), targets (N) i32 in [0, vocab) -> losses (N) = -log softmax(logits)[target].
  // Columns >= vocab (padding) are excluded from the softmax.
  virtual void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                                     Tensor& losses) = 0;
  // dlogits (N, Vp) = dloss * (softmax(logits) - onehot(target)), 0 in padded columns.
  // dlogits may alias logits (the usual case: the logits buffer is reused).
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t vocab,
                                      float dloss, Tensor& dlogits) = 0;

  // ---- vocabulary-parallel embedding and cross-entropy (tensor parallelism) ----
  // A shard holds vocabulary rows (wte) or logit columns [vocab_begin, vocab_begin + Vl); of
  // those, the first `valid` are real tokens (the rest is padding). Summed over the shards
  // of a tensor-parallel group these reproduce the unsharded ops above.
  // out (B, T, C) = wte_shard[tok - vocab_begin] for tokens in the shard, else 0, plus
  // wpe[t] when wpe is defined (pass it on one shard only).
  virtual void embedding_forward_shard(const Tensor& tokens, const Tensor& wte_shard,
                                       int64_t vocab_begin, const Tensor& wpe, Tensor& out) = 0;
  // dwte_shard += dout rows of tokens in the shard; dwpe += dout when defined.
  virtual void embedding_backward_shard(const Tensor& dout, const Tensor& tokens,
                                        int64_t vocab_begin, Tensor& dwte_shard, Tensor& dwpe) = 0;
  // logits (N, Vl) -> row_max (N): max over the valid columns (-inf when there are none).
  virtual void cross_entropy_shard_max(const Tensor& logits, int64_t valid, Tensor& row_max) = 0;
  // -> stats (N, 2): [sum over valid columns of exp(l - row_max), l[target - vocab_begin]
  // when the target is in the shard else 0]. With the group's max and these summed over
  // the group, loss = log(sum) + max - target_logit.
  virtual void cross_entropy_shard_sums(const Tensor& logits, const Tensor& targets,
                                        int64_t vocab_begin, int64_t valid, const Tensor& row_max,
                                        Tensor& stats) = 0;
  // dlogits (N, Vl) = dloss * (exp(l - row_max) / stats[:, 0] - [column is the target]) on
  // valid columns, 0 on padding, with the group's row_max and summed stats. May alias logits.
  virtual void cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets,
                                            int64_t vocab_begin, int64_t valid,
                                            const Tensor& row_max, const Tensor& stats, float dloss,
                                            Tensor& dlogits) = 0;

  // ---- elementwise ----
  // out = a + b (same shape); out may alias a or b.
  virtual void add(const Tensor& a, const Tensor& b, Tensor& out) = 0;
  // x *= s
  virtual void scale(Tensor& x, float s) = 0;

  // ---- optimizer ----
  // One AdamW step on a flat parameter range, PyTorch semantics:
  //   p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  //   p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
  virtual void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                            const AdamWOptions& opt) = 0;
  // Sum of squares of all elements, accumulated in double (for global L2 norms).
  virtual double sum_squares(const Tensor& x) = 0;
};

// The CPU backend (OpenBLAS + OpenMP). One shared instance.
Backend& cpu_backend();

}  // namespace peng
