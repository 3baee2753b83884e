#include "peng/optim/grad_clip.h"

#include <cmath>

namespace peng {

double sharded_grad_norm(const Tensor& grads, const std::vector<ParamSegment>& counted,
                         Backend& backend, const std::vector<Communicator*>& groups) {
  Tensor acc = Tensor::zeros({1}, DType::kF64, backend.device());
  add_grad_squares(grads, counted, backend, acc);
  return norm_from_squares(acc.to(Device::cpu()).data<double>()[0], groups);
}

void add_grad_squares(const Tensor& grads, const std::vector<ParamSegment>& counted,
                      Backend& backend, Tensor& acc) {
  for (const ParamSegment& s : counted) {
    backend.sum_squares_into(grads.flat_view(s.span.state_offset, {s.span.numel}), acc);
  }
}

double norm_from_squares(double local_squares, const std::vector<Communicator*>& groups) {
  double sum = local_squares;
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
