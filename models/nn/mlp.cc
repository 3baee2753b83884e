#include "peng/models/nn/mlp.h"

#include <cmath>

#include "peng/models/nn/buffer.h"

namespace peng {

namespace {
// The hidden features padded to a multiple of tp (zero features compute nothing).
int64_t padded_hidden(const DecoderConfig& c, int tp) { return (c.ffn_hidden + tp - 1) / tp * tp; }

// The hidden features as blocks: SwiGLU's [gate | up], each padded alike.
std::vector<ShardBlock> hidden_blocks(const DecoderConfig& c, int tp, bool gate_up) {
  const ShardBlock b{padded_hidden(c, tp), tp, c.ffn_hidden};
  if (gate_up) return {b, b};
  return {b};
}
}  // namespace

Mlp::Mlp(ParameterSet& params, const std::string& prefix, const DecoderConfig& c, const TpGroup& tp)
    : kind_(c.mlp),
      in_(params, prefix + "." + c.names.mlp_in, c.n_embd,
          (c.mlp == MlpKind::kSwiGlu ? 2 : 1) * padded_hidden(c, tp.size()), tp,
          {.bias = c.mlp_bias,
           .split = LinearSplit::kColumn,
           .layout = c.weight_layout,
           .blocks = hidden_blocks(c, tp.size(), c.mlp == MlpKind::kSwiGlu),
           .init = {ParamInit::kNormal, c.init_std}}),
      out_(params, prefix + "." + c.names.mlp_out, padded_hidden(c, tp.size()), c.n_embd, tp,
           {.bias = c.mlp_bias,
            .split = LinearSplit::kRow,
            .layout = c.weight_layout,
            .blocks = hidden_blocks(c, tp.size(), false),
            .init = {ParamInit::kNormal, c.init_std / std::sqrt(2.0 * c.n_layer)}}) {}

const Tensor& Mlp::forward(Backend& be, const Tensor& x, bool rows_sharded) {
  pre_ = in_.forward(be, x, rows_sharded);
  activate(be);
  const Tensor& out = out_.forward(be, act_, rows_sharded);
  if (recompute_act_) {
    act_ = Tensor();
    out_.drop_input();
  }
  return out;
}

// act_ = gelu or swiglu of pre_.
void Mlp::activate(Backend& be) {
  const int64_t hidden = kind_ == MlpKind::kSwiGlu ? pre_.dim(1) / 2 : pre_.dim(1);
  ensure_buffer(act_, {pre_.dim(0), hidden}, pre_.device());
  if (kind_ == MlpKind::kSwiGlu) {
    be.swiglu_forward(pre_, act_);
  } else {
    be.gelu_forward(pre_, act_);
  }
}

const Tensor& Mlp::backward(Backend& be, const Tensor& dout) {
  if (recompute_act_) {
    activate(be);
    out_.restore_input(act_);
  }
  const Tensor& dact = out_.backward(be, dout);
  if (recompute_act_) {  // made again: gone until the next forward
    act_ = Tensor();
    out_.drop_input();
  }
  ensure_buffer(dact_, pre_.shape(), dout.device());
  if (kind_ == MlpKind::kSwiGlu) {
    be.swiglu_backward(dact, pre_, dact_);
  } else {
    be.gelu_backward(dact, pre_, dact_);
  }
  return in_.backward(be, dact_);
}

}  // namespace peng
