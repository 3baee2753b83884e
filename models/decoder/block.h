// One pre-norm transformer layer:
//   x2 = x + attention(norm_1(x));  x3 = x2 + ffn(norm_2(x2))
// with the norm, attention and MLP kinds the DecoderConfig chooses; the feed-forward `ffn` is
// the MLP, or a Mixture of Experts in the MoE layers of an MoE config (MoeConfig).
#pragma once

#include <memory>

#include "peng/models/nn/attention.h"
#include "peng/models/nn/mlp.h"
#include "peng/models/nn/moe.h"
#include "peng/models/nn/norm.h"
#include "peng/models/nn/recompute.h"

namespace peng {

class Block {
 public:
  // Registers `<names.layer>.<index>.{attn_norm, attention, mlp_norm, mlp}` (the model sets
  // their Parameter::layer). Under sequence parallelism (tp.sequence_parallel, tp > 1)
  // the norms see this rank's rows only: their gradients are marked tp-partial.
  // An MoE layer registers `<names.layer>.<index>.<mlp>.` router and experts instead
  // (models/nn/moe.h) and routes over `experts`.
  Block(ParameterSet& params, int index, const DecoderConfig& config, const TpGroup& tp,
        RopeTables* rope, const ExpertGroup& experts = {});

  // x (R, C) rows of B sequences of T -> x3 (R, C), a buffer owned by the block; R = B*T,
  // or B*T / tp with rows_sharded (sequence parallelism). Keeps x.
  const Tensor& forward(Backend& be, const Tensor& x, int64_t batch, int64_t seq,
                        bool rows_sharded = false);
  // dres (R, C): on entry dL/dx3, on exit dL/dx (updated in place). `scale` is the
  // backward's loss scale (an MoE layer's balance loss is scaled alike).
  void backward(Backend& be, Tensor& dres, float scale);

  // What this layer recomputes in backward instead of keeping (models/nn/recompute.h).
  void set_recompute(const RecomputePolicy& policy);

  // The MoE feed-forward; null in a dense layer.
  Moe* moe() { return moe_.get(); }
  const Moe* moe() const { return moe_.get(); }

  void activation_slots(std::vector<Tensor*>& out) {
    norm_1_.activation_slots(out);
    attn_.activation_slots(out);
    norm_2_.activation_slots(out);
    if (mlp_) mlp_->activation_slots(out);
    if (moe_) moe_->activation_slots(out);
    out.insert(out.end(), {&x2_, &x3_, &input_});
  }

 private:
  int64_t n_embd_;
  Norm norm_1_;
  Attention attn_;
  Norm norm_2_;
  std::unique_ptr<FeedForward> mlp_;  // one of the two
  std::unique_ptr<Moe> moe_;
  Tensor x2_, x3_;
  // Recomputation: the policy, the last forward's arguments and (full) its input.
  RecomputePolicy recompute_;
  bool recomputing_ = false;
  int64_t batch_ = 0, seq_ = 0;
  bool rows_sharded_ = false;
  Tensor input_;

  void forget_activations();
  void recompute(Backend& be);
  void restore_norm_output(Backend& be, Norm& norm, bool attention);
};

}  // namespace peng
