#include "models/nn/linear.h"

#include "models/nn/buffer.h"

namespace peng {

Linear::Linear(ParameterSet& params, const std::string& prefix, int64_t in, int64_t out, bool bias)
    : params_(params), in_(in), out_(out) {
  weight_ = params.add(prefix + ".weight", {in, out});
  if (bias) bias_ = params.add(prefix + ".bias", {out});
}

const Tensor& Linear::forward(Backend& be, const Tensor& x) {
  PENG_CHECK(x.ndim() == 2 && x.dim(1) == in_, "Linear ", weight().name, ": input ", x.str());
  x_ = x;
  ensure_buffer(y_, {x.dim(0), out_}, x.device());
  Tensor none;
  be.linear_forward(x, weight().value, bias_ >= 0 ? params_.at(bias_).value : none, y_);
  return y_;
}

const Tensor& Linear::backward(Backend& be, const Tensor& dy) {
  ensure_buffer(dx_, x_.shape(), dy.device());
  Tensor none;
  be.linear_backward(dy, x_, weight().value, dx_, weight().grad,
                     bias_ >= 0 ? params_.at(bias_).grad : none);
  return dx_;
}

}  // namespace peng
