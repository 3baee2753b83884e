#include "models/nn/self_attention.h"

#include "models/nn/buffer.h"

namespace peng {

SelfAttention::SelfAttention(ParameterSet& params, const std::string& prefix, int64_t n_embd,
                             int n_head)
    : c_attn_(params, prefix + ".c_attn", n_embd, 3 * n_embd),
      c_proj_(params, prefix + ".c_proj", n_embd, n_embd),
      n_embd_(n_embd),
      n_head_(n_head) {}

const Tensor& SelfAttention::forward(Backend& be, const Tensor& x) {
  batch_ = x.dim(0);
  seq_ = x.dim(1);
  const int64_t n = batch_ * seq_;
  qkv_ = c_attn_.forward(be, x.view({n, n_embd_})).view({batch_, seq_, 3 * n_embd_});
  ensure_buffer(att_, {batch_, n_head_, seq_, seq_}, x.device());
  ensure_buffer(y_, {batch_, seq_, n_embd_}, x.device());
  be.attention_forward(qkv_, n_head_, y_, att_);
  return c_proj_.forward(be, y_.view({n, n_embd_}));
}

const Tensor& SelfAttention::backward(Backend& be, const Tensor& dout) {
  const Tensor& dy = c_proj_.backward(be, dout);
  ensure_buffer(dqkv_, qkv_.shape(), dout.device());
  be.attention_backward(dy.view({batch_, seq_, n_embd_}), qkv_, att_, n_head_, dqkv_);
  return c_attn_.backward(be, dqkv_.view({batch_ * seq_, 3 * n_embd_}));
}

Mlp::Mlp(ParameterSet& params, const std::string& prefix, int64_t n_embd)
    : c_fc_(params, prefix + ".c_fc", n_embd, 4 * n_embd),
      c_proj_(params, prefix + ".c_proj", 4 * n_embd, n_embd) {}

const Tensor& Mlp::forward(Backend& be, const Tensor& x) {
  pre_ = c_fc_.forward(be, x);
  ensure_buffer(act_, pre_.shape(), x.device());
  be.gelu_forward(pre_, act_);
  return c_proj_.forward(be, act_);
}

const Tensor& Mlp::backward(Backend& be, const Tensor& dout) {
  const Tensor& dact = c_proj_.backward(be, dout);
  ensure_buffer(dact_, dact.shape(), dout.device());
  be.gelu_backward(dact, pre_, dact_);
  return c_fc_.backward(be, dact_);
}

}  // namespace peng
