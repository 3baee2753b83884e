#include "optim/grad_clip.h"

#include <cmath>

namespace peng {

double global_grad_norm(const Tensor& grads, Backend& backend, Communicator* shards) {
  double sum = backend.sum_squares(grads);
  if (shards) {
    Tensor t = Tensor::from_vector<double>({sum}, {1});
    shards->all_reduce(t, ReduceOp::kSum)->wait();
    sum = t.data<double>()[0];
  }
  return std::sqrt(sum);
}

float clip_grad_norm(Tensor& grads, Backend& backend, double norm, float max_norm) {
  if (max_norm <= 0) return 1.0f;
  const double coef = double(max_norm) / (norm + 1e-6);
  if (coef >= 1.0) return 1.0f;
  backend.scale(grads, float(coef));
  return float(coef);
}

}  // namespace peng
