#include "peng/models/model.h"

#include <algorithm>

#include "peng/core/error.h"

namespace peng {

StageSplit PipelineLayout::layers(int n_layer) const {
  if (split.empty()) return even_split(n_layer, stages());
  check_split(split, n_layer, stages());
  return split;
}

int PipelineLayout::first_layer(int stage, int n_layer) const {
  const StageSplit s = layers(n_layer);
  int first = 0;
  for (int i = 0; i < stage; ++i) first += s[size_t(i)];
  return first;
}

int stage_of_layer(int layer, int n_layer, const PipelineLayout& pipe) {
  const int clamped = std::clamp(layer, 0, n_layer - 1);
  const StageSplit s = pipe.layers(n_layer);
  int stage = 0, end = s[0];
  while (clamped >= end) end += s[size_t(++stage)];
  return stage;
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
