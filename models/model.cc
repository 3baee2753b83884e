#include "peng/models/model.h"

#include <algorithm>

namespace peng {

int stage_of_layer(int layer, int n_layer, int stages) {
  const int clamped = std::clamp(layer, 0, n_layer - 1);
  return clamped / (n_layer / stages);
}

double CausalLM::forward(const Tensor& tokens, const Tensor& targets) {
  PENG_CHECK(pipeline().stages() == 1,
             "CausalLM::forward under pipeline parallelism: use forward_chunk");
  double loss = 0;
  forward_chunk(0, tokens, Tensor(), targets, &loss);
  return loss;
}

void CausalLM::forward_sum_into(const Tensor& tokens, const Tensor& targets, Tensor& loss_sum) {
  PENG_CHECK(pipeline().stages() == 1,
             "CausalLM::forward under pipeline parallelism: use forward_chunk");
  forward_chunk(0, tokens, Tensor(), targets, LossOut::sum_into(loss_sum));
}

void CausalLM::backward(float scale) {
  PENG_CHECK(pipeline().stages() == 1,
             "CausalLM::backward under pipeline parallelism: use backward_chunk");
  backward_chunk(0, Tensor(), scale);
}

}  // namespace peng
