#include "models/nn/linear.h"

#include "models/nn/buffer.h"

namespace peng {

Linear::Linear(ParameterSet& params, const std::string& prefix, int64_t in, int64_t out, bool bias,
               LinearSplit split, const TpGroup& tp, int blocks)
    : params_(params), split_(split), tp_(tp), in_(in), out_(out) {
  const int parts = tp.size(), index = tp.rank();
  ShardSpec w, b;
  if (split == LinearSplit::kColumn) {
    w = {.dim = 1, .parts = parts, .index = index, .blocks = blocks};
    b = {.dim = 0, .parts = parts, .index = index, .blocks = blocks};
    out_ = out / parts;
  } else if (split == LinearSplit::kRow) {
    w = {.dim = 0, .parts = parts, .index = index};
    in_ = in / parts;
  }
  weight_ = params.add(prefix + ".weight", {in, out}, w);
  if (bias) bias_ = params.add(prefix + ".bias", {out}, b);
}

const Tensor& Linear::forward(Backend& be, const Tensor& x) {
  PENG_CHECK(x.ndim() == 2 && x.dim(1) == in_, "Linear ", weight().name, ": input ", x.str());
  x_ = x;
  ensure_buffer(y_, {x.dim(0), out_}, x.device());
  Tensor none;
  // A row-parallel layer's partial products are summed over the group: its bias once.
  const bool add_bias = bias_ >= 0 && (split_ != LinearSplit::kRow || tp_.rank() == 0);
  be.linear_forward(x, weight().value, add_bias ? params_.at(bias_).value : none, y_);
  if (split_ == LinearSplit::kRow) tp_.all_reduce_sum(y_);
  return y_;
}

const Tensor& Linear::backward(Backend& be, const Tensor& dy) {
  ensure_buffer(dx_, x_.shape(), dy.device());
  Tensor none;
  be.linear_backward(dy, x_, weight().value, dx_, weight().grad,
                     bias_ >= 0 ? params_.at(bias_).grad : none);
  // x fed every column shard: its gradient is the sum of theirs.
  if (split_ == LinearSplit::kColumn) tp_.all_reduce_sum(dx_);
  return dx_;
}

}  // namespace peng
