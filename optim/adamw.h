// AdamW over a ParameterSet, exactly torch.optim.AdamW (decoupled weight decay, bias
// correction, eps added after the bias-corrected sqrt(v)); weight decay only on the
// parameters marked `weight_decay` (tensors with >= 2 dims).
// State: first and second moments, one flat f32 buffer each, aligned with the
// ParameterSet's flat buffers.
#pragma once

#include "core/backend.h"
#include "core/parameter.h"

namespace peng {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
};

class AdamW {
 public:
  AdamW(ParameterSet& params, Backend& backend, const AdamWConfig& config);

  // One update with learning rate `lr` using the current gradients.
  void step(float lr);
  int64_t steps_taken() const { return step_; }
  Tensor& exp_avg() { return m_; }
  Tensor& exp_avg_sq() { return v_; }

 private:
  ParameterSet& params_;
  Backend& backend_;
  AdamWConfig config_;
  int64_t step_ = 0;
  Tensor m_, v_;
};

}  // namespace peng
