#include "optim/adamw.h"

namespace peng {

AdamW::AdamW(ParameterSet& params, Backend& backend, const AdamWConfig& config)
    : params_(params), backend_(backend), config_(config) {
  m_ = Tensor::zeros({params.numel()}, DType::kF32, backend.device());
  v_ = Tensor::zeros({params.numel()}, DType::kF32, backend.device());
}

void AdamW::step(float lr) {
  ++step_;
  for (Parameter& p : params_.all()) {
    const int64_t n = p.value.numel();
    Tensor value = p.value.view({n}), grad = p.grad.view({n});
    Tensor m = m_.flat_view(p.offset, {n}), v = v_.flat_view(p.offset, {n});
    AdamWOptions opt{.lr = lr,
                     .beta1 = config_.beta1,
                     .beta2 = config_.beta2,
                     .eps = config_.eps,
                     .weight_decay = p.weight_decay ? config_.weight_decay : 0.0f,
                     .step = step_};
    backend_.adamw_update(value, grad, m, v, opt);
  }
}

}  // namespace peng
