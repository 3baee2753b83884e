#include "models/decoder/block.h"

#include <string>

#include "models/nn/buffer.h"

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
    mlp_ = std::make_unique<Mlp>(params, prefix(c, index, c.names.mlp), c, tp);
  }
  if (tp.sequence_parallel && tp.size() > 1) {
    for (const Norm* n : {&norm_1_, &norm_2_}) {
      for (int p : n->parameters()) params.at(p).tp_partial_grad = true;
    }
  }
}

const Tensor& Block::forward(Backend& be, const Tensor& x, int64_t batch, int64_t seq,
                             bool rows_sharded) {
  const int64_t rows = x.dim(0);
  const Tensor& h1 = norm_1_.forward(be, x);
  const Tensor& a = attn_.forward(be, h1, batch, seq, rows_sharded);
  ensure_buffer(x2_, {rows, n_embd_}, x.device());
  be.add(x, a, x2_);
  const Tensor& h2 = norm_2_.forward(be, x2_);
  const Tensor& m = moe_ ? moe_->forward(be, h2) : mlp_->forward(be, h2, rows_sharded);
  ensure_buffer(x3_, {rows, n_embd_}, x.device());
  be.add(x2_, m, x3_);
  return x3_;
}

void Block::backward(Backend& be, Tensor& dres, float scale) {
  Tensor d = dres.view({-1, n_embd_});
  norm_2_.backward(be, moe_ ? moe_->backward(be, d, scale) : mlp_->backward(be, d),
                   d);  // d: dL/dx3 -> dL/dx2
  norm_1_.backward(be, attn_.backward(be, d), d);  // d: dL/dx2 -> dL/dx
}

}  // namespace peng
