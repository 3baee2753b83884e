#include "optim/grad_clip.h"

#include <cmath>

namespace peng {

double sharded_grad_norm(const Tensor& grads, const std::vector<ParamSegment>& counted,
                         Backend& backend, const std::vector<Communicator*>& groups) {
  double sum = 0;
  for (const ParamSegment& s : counted) {
    sum += backend.sum_squares(grads.flat_view(s.span.state_offset, {s.span.numel}));
  }
  for (Communicator* group : groups) {
    Tensor t = Tensor::from_vector<double>({sum}, {1});
    group->all_reduce(t, ReduceOp::kSum)->wait();
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
