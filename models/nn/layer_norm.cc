#include "models/nn/layer_norm.h"

#include "models/nn/buffer.h"

namespace peng {

LayerNorm::LayerNorm(ParameterSet& params, const std::string& prefix, int64_t channels, float eps)
    : params_(params), channels_(channels), eps_(eps) {
  weight_ = params.add(prefix + ".weight", {channels});
  bias_ = params.add(prefix + ".bias", {channels});
}

const Tensor& LayerNorm::forward(Backend& be, const Tensor& x) {
  x_ = x;
  ensure_buffer(y_, x.shape(), x.device());
  ensure_buffer(mean_, {x.dim(0)}, x.device());
  ensure_buffer(rstd_, {x.dim(0)}, x.device());
  be.layernorm_forward(x, params_.at(weight_).value, params_.at(bias_).value, eps_, y_, mean_,
                       rstd_);
  return y_;
}

void LayerNorm::backward(Backend& be, const Tensor& dy, Tensor& dx) {
  be.layernorm_backward(dy, x_, params_.at(weight_).value, mean_, rstd_, dx,
                        params_.at(weight_).grad, params_.at(bias_).grad);
}

}  // namespace peng
