// The transformer MLP, either kind:
//   GELU (GPT-2):    out = gelu(x W_in + b_in) W_out + b_out,       W_in: C -> F
//   SwiGLU (Llama):  out = (silu(x W_gate) * (x W_up)) W_out,      W_in = [gate | up]: C -> 2F
// Over a tensor-parallel group W_in is column-parallel (SwiGLU's gate and up blocks split
// alike) and W_out row-parallel: F / tp hidden features per rank. When F does not divide by
// tp, the hidden features are padded to the next multiple with zero weights (and biases):
// silu(0) * 0 = gelu(0) = 0, so the padding computes nothing and its gradients stay zero;
// it never reaches checkpoints or exports (Parameter::logical_shape).
#pragma once

#include "peng/models/decoder/config.h"
#include "peng/models/nn/feed_forward.h"
#include "peng/models/nn/linear.h"

namespace peng {

class Mlp final : public FeedForward {
 public:
  // Registers `<prefix>.<names.mlp_in>` and `<prefix>.<names.mlp_out>`.
  Mlp(ParameterSet& params, const std::string& prefix, const DecoderConfig& config,
      const TpGroup& tp = {});

  // x (N, C) -> out (N, C). Keeps the input projection (N, local in features). With
  // rows_sharded, x and out are this rank's N / tp rows.
  const Tensor& forward(Backend& be, const Tensor& x, bool rows_sharded = false) override;
  // dout (N, C) -> dx (N, C).
  const Tensor& backward(Backend& be, const Tensor& dout) override;

  void activation_slots(std::vector<Tensor*>& out) override {
    in_.activation_slots(out);
    out_.activation_slots(out);
    out.insert(out.end(), {&pre_, &act_});
  }

  // Activation recomputation (models/decoder/block.h): with `act`, forward keeps only the
  // activation's input and backward recomputes its output. drop_input/restore_input forget
  // and take back the layer's input x.
  void set_recompute_act(bool act) override { recompute_act_ = act; }
  void drop_input() override { in_.drop_input(); }
  void restore_input(const Tensor& x) override { in_.restore_input(x); }

 private:
  void activate(Backend& be);

  MlpKind kind_;
  bool recompute_act_ = false;
  Linear in_, out_;
  Tensor pre_, act_, dact_;
};

}  // namespace peng
