// Causal multi-head self-attention: c_attn (C -> 3C), softmax(q k^T / sqrt(hd)) v per
// head, c_proj (C -> C). Parameter names follow Hugging Face GPT-2 (`<prefix>.c_attn`,
// `<prefix>.c_proj`). Over a tensor-parallel group of size tp each rank runs H / tp heads:
// c_attn is column-parallel (its q, k and v blocks split alike), c_proj row-parallel; below,
// Cl = C / tp and Hl = H / tp.
#pragma once

#include "models/nn/linear.h"

namespace peng {

class SelfAttention {
 public:
  SelfAttention(ParameterSet& params, const std::string& prefix, int64_t n_embd, int n_head,
                const TpGroup& tp = {});

  // x (B*T, C) rows of B sequences of T -> out (B*T, C). Keeps qkv (B, T, 3Cl) and att
  // (B, Hl, T, T). With rows_sharded, x and out are this rank's B*T / tp rows.
  const Tensor& forward(Backend& be, const Tensor& x, int64_t batch, int64_t seq,
                        bool rows_sharded = false);
  // dout (B*T, C) -> dx (B*T, C).
  const Tensor& backward(Backend& be, const Tensor& dout);

  Linear& c_proj() { return c_proj_; }
  void activation_slots(std::vector<Tensor*>& out) {
    c_attn_.activation_slots(out);
    c_proj_.activation_slots(out);
    out.insert(out.end(), {&qkv_, &att_, &y_});
  }

 private:
  Linear c_attn_, c_proj_;
  int64_t n_embd_, local_embd_;
  int local_heads_;
  int64_t batch_ = 0, seq_ = 0;
  Tensor qkv_, att_, y_, dqkv_;
};

// GPT-2 MLP: c_fc (C -> 4C), GELU (tanh), c_proj (4C -> C); over a tensor-parallel group
// c_fc is column-parallel and c_proj row-parallel (4C / tp hidden columns per rank).
class Mlp {
 public:
  Mlp(ParameterSet& params, const std::string& prefix, int64_t n_embd, const TpGroup& tp = {});

  // x (N, C) -> out (N, C). Keeps the pre-activation (N, 4C / tp). With rows_sharded, x and
  // out are this rank's N / tp rows.
  const Tensor& forward(Backend& be, const Tensor& x, bool rows_sharded = false);
  // dout (N, C) -> dx (N, C).
  const Tensor& backward(Backend& be, const Tensor& dout);

  Linear& c_proj() { return c_proj_; }
  void activation_slots(std::vector<Tensor*>& out) {
    c_fc_.activation_slots(out);
    c_proj_.activation_slots(out);
    out.insert(out.end(), {&pre_, &act_});
  }

 private:
  Linear c_fc_, c_proj_;
  Tensor pre_, act_, dact_;
};

}  // namespace peng
