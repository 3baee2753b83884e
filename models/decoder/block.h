// One pre-norm transformer layer:
//   x2 = x + attention(norm_1(x));  x3 = x2 + mlp(norm_2(x2))
// with the norm, attention and MLP kinds the DecoderConfig chooses.
#pragma once

#include "models/nn/attention.h"
#include "models/nn/mlp.h"
#include "models/nn/norm.h"

namespace peng {

class Block {
 public:
  // Registers `<names.layer>.<index>.{attn_norm, attention, mlp_norm, mlp}` (the model sets
  // their Parameter::layer). Under sequence parallelism (tp.sequence_parallel, tp > 1)
  // the norms see this rank's rows only: their gradients are marked tp-partial.
  Block(ParameterSet& params, int index, const DecoderConfig& config, const TpGroup& tp,
        RopeTables* rope);

  // x (R, C) rows of B sequences of T -> x3 (R, C), a buffer owned by the block; R = B*T,
  // or B*T / tp with rows_sharded (sequence parallelism). Keeps x.
  const Tensor& forward(Backend& be, const Tensor& x, int64_t batch, int64_t seq,
                        bool rows_sharded = false);
  // dres (R, C): on entry dL/dx3, on exit dL/dx (updated in place).
  void backward(Backend& be, Tensor& dres);

  void activation_slots(std::vector<Tensor*>& out) {
    norm_1_.activation_slots(out);
    attn_.activation_slots(out);
    norm_2_.activation_slots(out);
    mlp_.activation_slots(out);
    out.insert(out.end(), {&x2_, &x3_});
  }

 private:
  int64_t n_embd_;
  Norm norm_1_;
  Attention attn_;
  Norm norm_2_;
  Mlp mlp_;
  Tensor x2_, x3_;
};

}  // namespace peng
