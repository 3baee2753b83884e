#include "peng/models/nn/norm.h"

#include "peng/models/nn/buffer.h"

namespace peng {

Norm::Norm(ParameterSet& params, const std::string& prefix, int64_t channels, NormKind kind,
           float eps)
    : params_(params), kind_(kind), eps_(eps) {
  weight_ = params.add(prefix + ".weight", {channels});
  params.at(weight_).init = {ParamInit::kOnes};
  if (kind == NormKind::kLayerNorm) {
    bias_ = params.add(prefix + ".bias", {channels});
    params.at(bias_).init = {ParamInit::kZeros};
  }
}

std::vector<int> Norm::parameters() const {
  if (bias_ < 0) return {weight_};
  return {weight_, bias_};
}

const Tensor& Norm::forward(Backend& be, const Tensor& x) {
  x_ = x;
  ensure_buffer(y_, x.shape(), x.device());
  ensure_buffer(rstd_, {x.dim(0)}, x.device());
  const Parameter& w = params_.at(weight_);
  if (kind_ == NormKind::kRmsNorm) {
    be.rmsnorm_forward(x, w.value, eps_, y_, rstd_);
  } else {
    ensure_buffer(mean_, {x.dim(0)}, x.device());
    be.layernorm_forward(x, w.value, params_.at(bias_).value, eps_, y_, mean_, rstd_);
  }
  return y_;
}

void Norm::backward(Backend& be, const Tensor& dy, Tensor& dx) {
  Parameter& w = params_.at(weight_);
  if (kind_ == NormKind::kRmsNorm) {
    be.rmsnorm_backward(dy, x_, w.value, rstd_, dx, w.grad);
  } else {
    be.layernorm_backward(dy, x_, w.value, mean_, rstd_, dx, w.grad, params_.at(bias_).grad);
  }
}

}  // namespace peng
