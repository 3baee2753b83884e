#include "peng/optim/adamw.h"

namespace peng {

AdamW::AdamW(ParameterSet& params, Backend& backend, const AdamWConfig& config)
    : AdamW(params, backend, config, {{0, params.numel(), 0}}, params.numel()) {}

AdamW::AdamW(ParameterSet& params, Backend& backend, const AdamWConfig& config,
             const std::vector<FlatSpan>& spans, int64_t state_numel)
    : params_(params),
      backend_(backend),
      config_(config),
      segments_(split_at_parameters(params, spans)) {
  for (const ParamSegment& s : segments_) {
    PENG_CHECK(s.span.state_offset + s.span.numel <= state_numel, "AdamW: span [", s.span.offset,
               ", +", s.span.numel, ") outside the state");
  }
  m_ = Tensor::zeros({state_numel}, DType::kF32, backend.device());
  v_ = Tensor::zeros({state_numel}, DType::kF32, backend.device());
}

void AdamW::step(float lr, const Tensor& grads) {
  PENG_CHECK(grads.numel() == m_.numel(), "AdamW::step: gradients ", grads.str(),
             " do not match the state (", m_.numel(), " elements)");
  PENG_CHECK(!values_ || values_->numel() == m_.numel(), "AdamW::step: values ",
             values_ ? values_->str() : "", " do not match the state");
  ++step_;
  for (const ParamSegment& s : segments_) {
    const int64_t n = s.span.numel;
    Tensor value = values_ ? values_->flat_view(s.span.state_offset, {n})
                           : params_.flat_values().flat_view(s.span.offset, {n});
    Tensor grad = grads.flat_view(s.span.state_offset, {n});
    Tensor m = m_.flat_view(s.span.state_offset, {n}), v = v_.flat_view(s.span.state_offset, {n});
    AdamWOptions opt{.lr = lr,
                     .beta1 = config_.beta1,
                     .beta2 = config_.beta2,
                     .eps = config_.eps,
                     .weight_decay = s.param->weight_decay ? config_.weight_decay : 0.0f,
                     .step = step_};
    backend_.adamw_update(value, grad, m, v, opt);
  }
}

}  // namespace peng
