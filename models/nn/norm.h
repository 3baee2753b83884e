// Normalisation over the last dimension, either kind:
//   LayerNorm: y = (x - mean) * rstd * w + b,  rstd = 1 / sqrt(var(x) + eps)
//   RMSNorm:   y = x * rstd * w,               rstd = 1 / sqrt(mean(x^2) + eps)
// Both sit on the residual stream: backward ADDS dL/dx into the stream's gradient.
#pragma once

#include <string>
#include <vector>

#include "peng/core/backend.h"
#include "peng/core/parameter.h"
#include "peng/models/decoder/config.h"

namespace peng {

class Norm {
 public:
  // Registers `<prefix>.weight` (C, init 1) and, for LayerNorm, `<prefix>.bias` (C, init 0).
  Norm(ParameterSet& params, const std::string& prefix, int64_t channels, NormKind kind, float eps);

  // x (N, C) -> y (N, C). Keeps x, the statistics and y for backward.
  const Tensor& forward(Backend& be, const Tensor& x);
  // dy (N, C) is ADDED into dx (N, C) (the residual-stream gradient); dw, db accumulate.
  void backward(Backend& be, const Tensor& dy, Tensor& dx);
  // The parameters' indices (weight, then bias for LayerNorm).
  std::vector<int> parameters() const;
  // What forward keeps for backward (pipeline stashes move these out and back).
  void activation_slots(std::vector<Tensor*>& out) {
    out.insert(out.end(), {&x_, &y_, &mean_, &rstd_});
  }
  // Activation recomputation: forget the output (backward needs only x and the statistics);
  // forward(x) makes it again, bit for bit.
  void drop_output() { y_ = Tensor(); }
  const Tensor& input() const { return x_; }

 private:
  ParameterSet& params_;
  NormKind kind_;
  int weight_, bias_ = -1;
  float eps_;
  Tensor x_, y_, mean_, rstd_;
};

}  // namespace peng
