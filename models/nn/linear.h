// Linear layer in Hugging Face Conv1D layout: y = x @ W + b, W stored (in, out).
#pragma once

#include <string>

#include "core/backend.h"
#include "core/parameter.h"

namespace peng {

class Linear {
 public:
  // Registers `<prefix>.weight` (in, out) and, with bias, `<prefix>.bias` (out).
  Linear(ParameterSet& params, const std::string& prefix, int64_t in, int64_t out,
         bool bias = true);

  // x (N, in) -> y (N, out). Keeps a handle on x for backward.
  const Tensor& forward(Backend& be, const Tensor& x);
  // dy (N, out) -> dx (N, in); dW (in, out) and db (out) accumulate.
  const Tensor& backward(Backend& be, const Tensor& dy);

  Parameter& weight() { return params_.at(weight_); }

 private:
  ParameterSet& params_;
  int weight_ = -1, bias_ = -1;
  int64_t in_, out_;
  Tensor x_, y_, dx_;
};

}  // namespace peng
