// One pre-LayerNorm GPT-2 transformer block:
//   x2 = x + attn(ln_1(x));  x3 = x2 + mlp(ln_2(x2))
#pragma once

#include "models/nn/layer_norm.h"
#include "models/nn/self_attention.h"

namespace peng {

class Block {
 public:
  // Registers h.<index>.{ln_1, attn, ln_2, mlp}.
  Block(ParameterSet& params, int index, int64_t n_embd, int n_head, float eps,
        const TpGroup& tp = {});

  // x (R, C) rows of B sequences of T -> x3 (R, C), a buffer owned by the block; R = B*T,
  // or B*T / tp with rows_sharded (sequence parallelism). Keeps x.
  const Tensor& forward(Backend& be, const Tensor& x, int64_t batch, int64_t seq,
                        bool rows_sharded = false);
  // dres (R, C): on entry dL/dx3, on exit dL/dx (updated in place).
  void backward(Backend& be, Tensor& dres);

  SelfAttention& attn() { return attn_; }
  Mlp& mlp() { return mlp_; }
  void activation_slots(std::vector<Tensor*>& out) {
    ln_1_.activation_slots(out);
    attn_.activation_slots(out);
    ln_2_.activation_slots(out);
    mlp_.activation_slots(out);
    out.insert(out.end(), {&x2_, &x3_});
  }

 private:
  LayerNorm ln_1_;
  SelfAttention attn_;
  LayerNorm ln_2_;
  Mlp mlp_;
  int64_t n_embd_;
  Tensor x2_, x3_;
};

}  // namespace peng
