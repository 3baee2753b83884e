#include "peng/models/nn/attention.h"

#include <algorithm>
#include <cmath>

#include "peng/models/nn/buffer.h"

namespace peng {

namespace {
// Residual projections start smaller: N(0, std / sqrt(2 n_layer)) (GPT-2, Megatron).
ParamInit residual_init(const DecoderConfig& c) {
  return {ParamInit::kNormal, c.init_std / std::sqrt(2.0 * c.n_layer)};
}

LinearOptions qkv_options(const DecoderConfig& c, int tp) {
  c.check_tensor_parallel(tp);                      // before the projection splits by it
  const int kv_pieces = std::min(c.n_kv_head, tp);  // replicated when tp > K
  return {.bias = c.qkv_bias,
          .split = LinearSplit::kColumn,
          .layout = c.weight_layout,
          .blocks = {{c.q_width(), tp}, {c.kv_width(), kv_pieces}, {c.kv_width(), kv_pieces}},
          .init = {ParamInit::kNormal, c.init_std}};
}
}  // namespace

Attention::Attention(ParameterSet& params, const std::string& prefix, const DecoderConfig& c,
                     const TpGroup& tp, RopeTables* rope)
    : qkv_proj_(params, prefix + "." + c.names.qkv, c.n_embd, c.q_width() + 2 * c.kv_width(), tp,
                qkv_options(c, tp.size())),
      qk_norm_(register_qk_norm(params, prefix, c, tp)),
      out_proj_(params, prefix + "." + c.names.attn_out, c.q_width(), c.n_embd, tp,
                {.bias = c.attn_out_bias,
                 .split = LinearSplit::kRow,
                 .layout = c.weight_layout,
                 .init = residual_init(c)}),
      params_(params),
      rope_(rope),
      local_heads_(c.n_head / tp.size()),
      local_kv_heads_(std::max(1, c.n_kv_head / tp.size())),
      head_dim_(c.head_dim),
      norm_eps_(c.norm_eps) {}

Attention::QkNorm Attention::register_qk_norm(ParameterSet& params, const std::string& prefix,
                                              const DecoderConfig& c, const TpGroup& tp) {
  QkNorm out;
  if (!c.qk_norm) return out;
  for (auto [index, name] : {std::pair{&out.q, &c.names.q_norm}, {&out.k, &c.names.k_norm}}) {
    *index = params.add(prefix + "." + *name + ".weight", {c.head_dim});
    Parameter& p = params.at(*index);
    p.init = {ParamInit::kOnes};
    p.tp_partial_grad = tp.size() > 1;  // heads on every rank share it
  }
  return out;
}

const Tensor& Attention::forward(Backend& be, const Tensor& x, int64_t batch, int64_t seq,
                                 bool rows_sharded) {
  batch_ = batch;
  seq_ = seq;
  const int64_t groups = local_heads_ + 2 * local_kv_heads_, width = groups * head_dim_;
  const Tensor raw = qkv_proj_.forward(be, x, rows_sharded).view({batch, seq, width});
  qkv_ = raw;
  if (qk_norm_.q >= 0) {  // normed into a buffer of its own: backward needs the raw features
    ensure_buffer(normed_, raw.shape(), x.device());
    ensure_buffer(qk_rstd_, {batch * seq, local_heads_ + local_kv_heads_}, x.device());
    be.qk_norm_forward(raw, local_heads_, local_kv_heads_, params_.at(qk_norm_.q).value,
                       params_.at(qk_norm_.k).value, norm_eps_, normed_, qk_rstd_);
    qkv_ = normed_;
  }
  if (rope_) {
    rope_->ensure(seq);
    be.rope_forward(qkv_, int(groups), local_heads_ + local_kv_heads_, rope_->cos(), rope_->sin());
  }
  attend(be);
  if (recompute_probs_) att_ = Tensor();
  return out_proj_.forward(be, y_.view({batch * seq, local_heads_ * head_dim_}), rows_sharded);
}

// y_ and att_ from qkv_ (in backward, again: the same bits).
void Attention::attend(Backend& be) {
  ensure_buffer(att_, {batch_, local_heads_, seq_, seq_}, qkv_.device());
  ensure_buffer(y_, {batch_, seq_, local_heads_ * head_dim_}, qkv_.device());
  be.attention_forward(qkv_, local_heads_, local_kv_heads_, y_, att_);
}

const Tensor& Attention::backward(Backend& be, const Tensor& dout) {
  const int64_t groups = local_heads_ + 2 * local_kv_heads_;
  const Tensor& dy = out_proj_.backward(be, dout);
  if (recompute_probs_) attend(be);  // y_ is rewritten with the values out_proj just used
  ensure_buffer(dqkv_, qkv_.shape(), dout.device());
  be.attention_backward(dy.view({batch_, seq_, local_heads_ * head_dim_}), qkv_, att_, local_heads_,
                        local_kv_heads_, dqkv_);
  if (rope_) {
    be.rope_backward(dqkv_, int(groups), local_heads_ + local_kv_heads_, rope_->cos(),
                     rope_->sin());
  }
  if (qk_norm_.q >= 0) {
    Parameter &wq = params_.at(qk_norm_.q), &wk = params_.at(qk_norm_.k);
    const Tensor raw = qkv_proj_.output().view(qkv_.shape());
    be.qk_norm_backward(dqkv_, raw, local_heads_, local_kv_heads_, wq.value, wk.value, qk_rstd_,
                        dqkv_, wq.grad, wk.grad);
  }
  if (recompute_probs_) att_ = Tensor();  // made again: gone until the next forward
  return qkv_proj_.backward(be, dqkv_.view({batch_ * seq_, groups * head_dim_}));
}

}  // namespace peng
