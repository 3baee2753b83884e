#include "models/nn/self_attention.h"

#include "models/nn/buffer.h"

namespace peng {

SelfAttention::SelfAttention(ParameterSet& params, const std::string& prefix, int64_t n_embd,
                             int n_head, const TpGroup& tp)
    : c_attn_(params, prefix + ".c_attn", n_embd, 3 * n_embd, true, LinearSplit::kColumn, tp, 3),
      c_proj_(params, prefix + ".c_proj", n_embd, n_embd, true, LinearSplit::kRow, tp),
      n_embd_(n_embd),
      local_embd_(n_embd / tp.size()),
      local_heads_(n_head / tp.size()) {
  PENG_CHECK(n_head % tp.size() == 0, prefix, ": ", n_head, " heads do not split over ", tp.size(),
             " tensor-parallel ranks");
}

const Tensor& SelfAttention::forward(Backend& be, const Tensor& x, int64_t batch, int64_t seq,
                                     bool rows_sharded) {
  batch_ = batch;
  seq_ = seq;
  const int64_t n = batch_ * seq_;
  qkv_ = c_attn_.forward(be, x, rows_sharded).view({batch_, seq_, 3 * local_embd_});
  ensure_buffer(att_, {batch_, local_heads_, seq_, seq_}, x.device());
  ensure_buffer(y_, {batch_, seq_, local_embd_}, x.device());
  be.attention_forward(qkv_, local_heads_, y_, att_);
  return c_proj_.forward(be, y_.view({n, local_embd_}), rows_sharded);
}

const Tensor& SelfAttention::backward(Backend& be, const Tensor& dout) {
  const Tensor& dy = c_proj_.backward(be, dout);
  ensure_buffer(dqkv_, qkv_.shape(), dout.device());
  be.attention_backward(dy.view({batch_, seq_, local_embd_}), qkv_, att_, local_heads_, dqkv_);
  return c_attn_.backward(be, dqkv_.view({batch_ * seq_, 3 * local_embd_}));
}

Mlp::Mlp(ParameterSet& params, const std::string& prefix, int64_t n_embd, const TpGroup& tp)
    : c_fc_(params, prefix + ".c_fc", n_embd, 4 * n_embd, true, LinearSplit::kColumn, tp),
      c_proj_(params, prefix + ".c_proj", 4 * n_embd, n_embd, true, LinearSplit::kRow, tp) {}

const Tensor& Mlp::forward(Backend& be, const Tensor& x, bool rows_sharded) {
  pre_ = c_fc_.forward(be, x, rows_sharded);
  ensure_buffer(act_, pre_.shape(), x.device());
  be.gelu_forward(pre_, act_);
  return c_proj_.forward(be, act_, rows_sharded);
}

const Tensor& Mlp::backward(Backend& be, const Tensor& dout) {
  const Tensor& dact = c_proj_.backward(be, dout);
  ensure_buffer(dact_, dact.shape(), dout.device());
  be.gelu_backward(dact, pre_, dact_);
  return c_fc_.backward(be, dact_);
}

}  // namespace peng
