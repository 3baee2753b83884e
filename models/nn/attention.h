// Causal self-attention with grouped-query heads, as one layer:
//   qkv = x W_qkv (+ b)            fused [q | k | v]: H*hd, K*hd, K*hd features
//   q, k = per-head RMSNorm        (qk_norm: Qwen3)
//   q, k = RoPE(q, k)              (rope: Llama, Qwen)
//   y = softmax(q k^T / sqrt(hd) + causal mask) v   per query head, kv head h / (H / K)
//   out = y W_out (+ b)
// Over a tensor-parallel group of size tp each rank runs H / tp query heads and K / tp kv
// heads (Megatron): W_qkv is column-parallel with its three blocks split alike, W_out
// row-parallel. When tp exceeds K (a multiple of it), each rank holds the one kv head its
// query heads use, replicated on tp / K ranks (ShardBlock pieces), so Hl = H / tp and
// Kl = max(1, K / tp) below. The per-head norm weights are shared by heads on every rank:
// their gradients are tp-partial.
#pragma once

#include <memory>

#include "peng/models/decoder/config.h"
#include "peng/models/nn/linear.h"
#include "peng/models/nn/rope.h"

namespace peng {

class Attention {
 public:
  // Registers `<prefix>.<names.qkv>`, `<prefix>.<names.attn_out>` and, with qk_norm,
  // `<prefix>.<names.q_norm>` / `<names.k_norm>` (hd, init 1). `rope` (shared, may be
  // null when the config has no rotary embedding) must outlive the layer.
  Attention(ParameterSet& params, const std::string& prefix, const DecoderConfig& config,
            const TpGroup& tp, RopeTables* rope);

  // x (B*T, C) rows of B sequences of T -> out (B*T, C). Keeps qkv (B, T, Gl*hd) and att
  // (B, Hl, T, T). With rows_sharded, x and out are this rank's B*T / tp rows.
  const Tensor& forward(Backend& be, const Tensor& x, int64_t batch, int64_t seq,
                        bool rows_sharded = false);
  // dout (B*T, C) -> dx (B*T, C).
  const Tensor& backward(Backend& be, const Tensor& dout);

  void activation_slots(std::vector<Tensor*>& out) {
    qkv_proj_.activation_slots(out);
    out_proj_.activation_slots(out);
    out.insert(out.end(), {&qkv_, &normed_, &qk_rstd_, &att_, &y_});
  }

  // Activation recomputation (models/decoder/block.h): with `probs`, forward drops the
  // attention probabilities (B, Hl, T, T) and backward recomputes them from qkv (Megatron's
  // core_attn). drop_input/restore_input forget and take back the layer's input x.
  void set_recompute_probs(bool probs) { recompute_probs_ = probs; }
  void drop_input() { qkv_proj_.drop_input(); }
  void restore_input(const Tensor& x) { qkv_proj_.restore_input(x); }

 private:
  struct QkNorm {
    int q = -1, k = -1;  // parameter indices; -1 without qk_norm
  };
  void attend(Backend& be);
  static QkNorm register_qk_norm(ParameterSet& params, const std::string& prefix,
                                 const DecoderConfig& config, const TpGroup& tp);

  // Registered in this order (Hugging Face's): q/k/v, the per-head norms, the output.
  Linear qkv_proj_;
  QkNorm qk_norm_;
  Linear out_proj_;
  ParameterSet& params_;
  RopeTables* rope_;
  int local_heads_, local_kv_heads_;
  int64_t head_dim_;
  float norm_eps_;
  int64_t batch_ = 0, seq_ = 0;
  bool recompute_probs_ = false;
  // qkv_: what the kernel saw (rotated; normed into normed_ first with qk_norm, else the
  // projection's own output, rotated in place). The projection keeps the raw output.
  Tensor qkv_, normed_, qk_rstd_, att_, y_, dqkv_;
};

}  // namespace peng
