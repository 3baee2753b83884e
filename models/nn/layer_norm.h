// LayerNorm over the last dimension: y = (x - mean) * rstd * w + b.
#pragma once

#include <string>
#include <vector>

#include "core/backend.h"
#include "core/parameter.h"

namespace peng {

class LayerNorm {
 public:
  // Registers `<prefix>.weight` and `<prefix>.bias`, both (C).
  LayerNorm(ParameterSet& params, const std::string& prefix, int64_t channels, float eps);

  // x (N, C) -> y (N, C). Keeps x, mean (N), rstd (N) for backward.
  const Tensor& forward(Backend& be, const Tensor& x);
  // dy (N, C) is ADDED into dx (N, C) (the residual-stream gradient); dw, db accumulate.
  void backward(Backend& be, const Tensor& dy, Tensor& dx);
  // What forward keeps for backward (pipeline stashes move these out and back).
  void activation_slots(std::vector<Tensor*>& out) {
    out.insert(out.end(), {&x_, &y_, &mean_, &rstd_});
  }

 private:
  ParameterSet& params_;
  int weight_, bias_;
  int64_t channels_;
  float eps_;
  Tensor x_, y_, mean_, rstd_;
};

}  // namespace peng
