#include "optim/adamw.h"

#include <algorithm>

namespace peng {

AdamW::AdamW(ParameterSet& params, Backend& backend, const AdamWConfig& config)
    : AdamW(params, backend, config, {{0, params.numel(), 0}}, params.numel()) {}

AdamW::AdamW(ParameterSet& params, Backend& backend, const AdamWConfig& config,
             const std::vector<FlatSpan>& spans, int64_t state_numel)
    : params_(params), backend_(backend), config_(config) {
  for (const FlatSpan& s : spans) {
    PENG_CHECK(s.offset >= 0 && s.offset + s.numel <= params.numel() && s.state_offset >= 0 &&
                   s.state_offset + s.numel <= state_numel,
               "AdamW: span [", s.offset, ", +", s.numel, ") outside the buffers");
    for (const Parameter& p : params.all()) {
      const int64_t lo = std::max(s.offset, p.offset);
      const int64_t hi = std::min(s.offset + s.numel, p.offset + p.value.numel());
      if (lo >= hi) continue;
      segments_.push_back({{lo, hi - lo, s.state_offset + (lo - s.offset)}, p.weight_decay});
    }
  }
  m_ = Tensor::zeros({state_numel}, DType::kF32, backend.device());
  v_ = Tensor::zeros({state_numel}, DType::kF32, backend.device());
}

void AdamW::step(float lr, const Tensor& grads) {
  PENG_CHECK(grads.numel() == m_.numel(), "AdamW::step: gradients ", grads.str(),
             " do not match the state (", m_.numel(), " elements)");
  ++step_;
  for (const Segment& s : segments_) {
    const int64_t n = s.span.numel;
    Tensor value = params_.flat_values().flat_view(s.span.offset, {n});
    Tensor grad = grads.flat_view(s.span.state_offset, {n});
    Tensor m = m_.flat_view(s.span.state_offset, {n}), v = v_.flat_view(s.span.state_offset, {n});
    AdamWOptions opt{.lr = lr,
                     .beta1 = config_.beta1,
                     .beta2 = config_.beta2,
                     .eps = config_.eps,
                     .weight_decay = s.weight_decay ? config_.weight_decay : 0.0f,
                     .step = step_};
    backend_.adamw_update(value, grad, m, v, opt);
  }
}

}  // namespace peng
