#include "optim/grad_clip.h"

#include <cmath>

namespace peng {

double global_grad_norm(ParameterSet& params, Backend& backend) {
  return std::sqrt(backend.sum_squares(params.flat_grads()));
}

float clip_grad_norm(ParameterSet& params, Backend& backend, double norm, float max_norm) {
  if (max_norm <= 0) return 1.0f;
  const double coef = double(max_norm) / (norm + 1e-6);
  if (coef >= 1.0) return 1.0f;
  backend.scale(params.flat_grads(), float(coef));
  return float(coef);
}

}  // namespace peng
