#include "peng/models/nn/linear.h"

#include <algorithm>

#include "peng/models/nn/buffer.h"

namespace peng {

Linear::Linear(ParameterSet& params, const std::string& prefix, int64_t in, int64_t out,
               const TpGroup& tp, const LinearOptions& o)
    : params_(params), split_(o.split), layout_(o.layout), tp_(tp), in_(in), out_(out) {
  const int parts = tp.size(), index = tp.rank();
  const bool out_in = o.layout == WeightLayout::kOutIn;
  const int out_dim = out_in ? 0 : 1, in_dim = out_in ? 1 : 0;
  ShardSpec w, b;
  // The real (logical) extent of the split features: padded blocks hold fewer.
  int64_t real = 0;
  for (const ShardBlock& block : o.blocks) real += block.real();
  Shape logical = out_in ? Shape{out, in} : Shape{in, out};
  if (o.split == LinearSplit::kColumn) {
    w = {.dim = out_dim, .parts = parts, .index = index, .fused = o.blocks};
    b = {.dim = 0, .parts = parts, .index = index, .fused = o.blocks};
    out_ = shard_shape(prefix + ".bias", {out}, b)[0];
    if (!o.blocks.empty()) logical[size_t(out_dim)] = real;
  } else if (o.split == LinearSplit::kRow) {
    w = {.dim = in_dim, .parts = parts, .index = index, .fused = o.blocks};
    in_ = shard_shape(prefix + ".weight", out_in ? Shape{out, in} : Shape{in, out},
                      w)[size_t(in_dim)];
    if (!o.blocks.empty()) logical[size_t(in_dim)] = real;
  }
  weight_ = params.add(prefix + ".weight", out_in ? Shape{out, in} : Shape{in, out}, w);
  Parameter& weight = params.at(weight_);
  weight.logical_shape = logical;
  weight.init = o.init;
  if (o.bias) {
    bias_ = params.add(prefix + ".bias", {out}, b);
    Parameter& bias = params.at(bias_);
    bias.logical_shape = {logical[size_t(out_dim)]};
    bias.init = {ParamInit::kZeros};
  }
}

const Tensor& Linear::forward(Backend& be, const Tensor& x, bool rows_sharded) {
  PENG_CHECK(x.ndim() == 2 && x.dim(1) == in_, "Linear ", weight().name, ": input ", x.str());
  rows_sharded_ = rows_sharded && tp_.size() > 1 && split_ != LinearSplit::kNone;
  Tensor none;
  const Tensor* bias = bias_ >= 0 ? &params_.at(bias_).value : &none;
  if (rows_sharded_ && split_ == LinearSplit::kColumn) {  // gather the rows, then as usual
    ensure_buffer(full_, {x.dim(0) * tp_.size(), in_}, x.device());
    tp_.all_gather_rows(x, full_);
    x_ = full_;
    ensure_buffer(y_, {full_.dim(0), out_}, x.device());
    be.linear_forward(full_, weight().value, *bias, y_, layout_);
    return y_;
  }
  x_ = x;
  if (rows_sharded_) {  // kRow: partial sums of all rows -> this rank's rows, + b
    const int64_t rows = x.dim(0) / tp_.size();
    ensure_buffer(full_, {x.dim(0), out_}, x.device());
    be.linear_forward(x, weight().value, none, full_, layout_);
    ensure_buffer(y_, {rows, out_}, x.device());
    tp_.reduce_scatter_rows(full_, y_);
    if (bias_ >= 0) {  // y += ones (rows, 1) @ b (1, out)
      if (!ones_.defined() || ones_.dim(0) != rows) {
        Tensor host = Tensor::empty({rows, 1});
        std::fill(host.data<float>(), host.data<float>() + rows, 1.0f);
        ones_ = host.to(x.device());
      }
      be.matmul(ones_, params_.at(bias_).value.view({1, out_}), y_, {.beta = 1.0f});
    }
    return y_;
  }
  ensure_buffer(y_, {x.dim(0), out_}, x.device());
  // A row-parallel layer's partial products are summed over the group: its bias once.
  const bool add_bias = split_ != LinearSplit::kRow || tp_.rank() == 0;
  be.linear_forward(x, weight().value, add_bias ? *bias : none, y_, layout_);
  if (split_ == LinearSplit::kRow) tp_.all_reduce_sum(y_);
  return y_;
}

void Linear::restore_input(const Tensor& x) {
  if (rows_sharded_ && split_ == LinearSplit::kColumn) {
    ensure_buffer(full_, {x.dim(0) * tp_.size(), in_}, x.device());
    tp_.all_gather_rows(x, full_);
    x_ = full_;
    return;
  }
  x_ = x;
}

const Tensor& Linear::backward(Backend& be, const Tensor& dy) {
  Tensor none;
  Tensor& db = bias_ >= 0 ? params_.at(bias_).grad : none;
  const Tensor* g = &dy;
  if (rows_sharded_ && split_ == LinearSplit::kRow) {  // every rank's dy rows
    ensure_buffer(dfull_, {dy.dim(0) * tp_.size(), out_}, dy.device());
    tp_.all_gather_rows(dy, dfull_);
    g = &dfull_;
  }
  ensure_buffer(dx_, x_.shape(), dy.device());
  be.linear_backward(*g, x_, weight().value, dx_, weight().grad, db, layout_);
  if (split_ != LinearSplit::kColumn) return dx_;
  // x fed every column shard: its gradient is the sum of theirs (this rank's rows of it
  // under sequence parallelism).
  if (!rows_sharded_) {
    tp_.all_reduce_sum(dx_);
    return dx_;
  }
  ensure_buffer(dx_rows_, {dx_.dim(0) / tp_.size(), in_}, dy.device());
  tp_.reduce_scatter_rows(dx_, dx_rows_);
  return dx_rows_;
}

}  // namespace peng
