#include "peng/models/decoder/block.h"

#include <string>

#include "peng/models/nn/buffer.h"

namespace peng {

namespace {
std::string prefix(const DecoderConfig& c, int index, const std::string& name) {
  return c.names.layer + "." + std::to_string(index) + "." + name;
}
}  // namespace

Block::Block(ParameterSet& params, int index, const DecoderConfig& c, const TpGroup& tp,
             RopeTables* rope, const ExpertGroup& experts)
    : n_embd_(c.n_embd),
      norm_1_(params, prefix(c, index, c.names.attn_norm), c.n_embd, c.norm, c.norm_eps),
      attn_(params, prefix(c, index, c.names.attention), c, tp, rope),
      norm_2_(params, prefix(c, index, c.names.mlp_norm), c.n_embd, c.norm, c.norm_eps) {
  if (c.moe.is_moe_layer(index)) {
    moe_ = std::make_unique<Moe>(params, prefix(c, index, c.names.mlp), index, c, tp, experts);
  } else {
    mlp_ = make_feed_forward(params, prefix(c, index, c.names.mlp), c, tp);
  }
  if (tp.sequence_parallel && tp.size() > 1) {
    for (const Norm* n : {&norm_1_, &norm_2_}) {
      for (int p : n->parameters()) params.at(p).tp_partial_grad = true;
    }
  }
}

void Block::set_recompute(const RecomputePolicy& policy) {
  recompute_ = policy;
  attn_.set_recompute_probs(!policy.full && policy.core_attn);
  if (mlp_) mlp_->set_recompute_act(!policy.full && policy.mlp_act);
}

const Tensor& Block::forward(Backend& be, const Tensor& x, int64_t batch, int64_t seq,
                             bool rows_sharded) {
  batch_ = batch;
  seq_ = seq;
  rows_sharded_ = rows_sharded;
  const int64_t rows = x.dim(0);
  const Tensor& h1 = norm_1_.forward(be, x);
  const Tensor& a = attn_.forward(be, h1, batch, seq, rows_sharded);
  ensure_buffer(x2_, {rows, n_embd_}, x.device());
  be.add(x, a, x2_);
  const Tensor& h2 = norm_2_.forward(be, x2_);
  const Tensor& m = moe_ ? moe_->forward(be, h2) : mlp_->forward(be, h2, rows_sharded);
  ensure_buffer(x3_, {rows, n_embd_}, x.device());
  be.add(x2_, m, x3_);
  if (!recomputing_) forget_activations();
  return x3_;
}

// What the policy does not keep, dropped after forward.
void Block::forget_activations() {
  if (recompute_.full) {  // all but the input and the output (the next layer's input)
    const Tensor input = norm_1_.input();
    std::vector<Tensor*> slots;
    activation_slots(slots);
    for (Tensor* t : slots) {
      if (t != &x3_) *t = Tensor();
    }
    input_ = input;
    return;
  }
  if (!recompute_.norm) return;
  norm_1_.drop_output();
  attn_.drop_input();
  norm_2_.drop_output();
  if (moe_) moe_->drop_input();
  if (mlp_) mlp_->drop_input();
}

// Full recomputation: the forward again from the kept input (collectives and MoE routing
// included, the step's routing statistics untouched); the same bits as the first time.
void Block::recompute(Backend& be) {
  recomputing_ = true;
  if (moe_) moe_->set_recomputing(true);
  const Tensor input = input_;
  forward(be, input, batch_, seq_, rows_sharded_);
  input_ = input;
  if (moe_) moe_->set_recomputing(false);
  recomputing_ = false;
}

// Selective `norm`: the norm's output again, handed to the layer that reads it.
void Block::restore_norm_output(Backend& be, Norm& norm, bool attention) {
  const Tensor& y = norm.forward(be, norm.input());
  if (attention) {
    attn_.restore_input(y);
  } else if (moe_) {
    moe_->restore_input(y);
  } else {
    mlp_->restore_input(y);
  }
}

void Block::backward(Backend& be, Tensor& dres, float scale) {
  const bool norms = !recompute_.full && recompute_.norm;
  if (recompute_.full) recompute(be);
  Tensor d = dres.view({-1, n_embd_});
  if (norms) restore_norm_output(be, norm_2_, /*attention=*/false);
  norm_2_.backward(be, moe_ ? moe_->backward(be, d, scale) : mlp_->backward(be, d),
                   d);  // d: dL/dx3 -> dL/dx2
  if (norms) restore_norm_output(be, norm_1_, /*attention=*/true);
  norm_1_.backward(be, attn_.backward(be, d), d);  // d: dL/dx2 -> dL/dx
  if (recompute_.full || recompute_.norm) {  // what was made again goes until the next forward
    forget_activations();
    input_ = Tensor();
  }
}

}  // namespace peng
