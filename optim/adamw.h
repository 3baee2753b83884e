// AdamW over a ParameterSet, exactly torch.optim.AdamW (decoupled weight decay, bias
// correction, eps added after the bias-corrected sqrt(v)); weight decay only on the
// parameters marked `weight_decay` (tensors with >= 2 dims).
//
// The optimizer updates a set of spans of the flat parameter buffer: all of it by
// default, or (ZeRO 1/2) this rank's shard. Each span's gradient and first/second moments
// sit at its `state_offset` in buffers of `state_numel` elements: for the whole buffer
// that is the ParameterSet's own layout, so step(lr) reads the flat gradients. Under ZeRO-3
// the values too are sharded: set_values() points the update at a buffer laid out like the
// state instead of the flat values.
#pragma once

#include <vector>

#include "peng/core/backend.h"
#include "peng/core/parameter.h"

namespace peng {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
};

class AdamW {
 public:
  // Updates every parameter.
  AdamW(ParameterSet& params, Backend& backend, const AdamWConfig& config);
  // Updates `spans` only; state buffers of `state_numel` elements.
  AdamW(ParameterSet& params, Backend& backend, const AdamWConfig& config,
        const std::vector<FlatSpan>& spans, int64_t state_numel);

  // One update with learning rate `lr`; `grads` is laid out like the state (state_numel).
  void step(float lr, const Tensor& grads);
  // One update of the whole set from its flat gradients.
  void step(float lr) { step(lr, params_.flat_grads()); }
  // The values the spans update, laid out like the state (state_numel); must outlive this.
  void set_values(Tensor* values) { values_ = values; }
  int64_t steps_taken() const { return step_; }
  // Restores the bias-correction counter (resuming from a checkpoint).
  void set_steps_taken(int64_t steps) { step_ = steps; }
  Tensor& exp_avg() { return m_; }
  Tensor& exp_avg_sq() { return v_; }

 private:
  ParameterSet& params_;
  Backend& backend_;
  AdamWConfig config_;
  std::vector<ParamSegment> segments_;
  int64_t step_ = 0;
  Tensor m_, v_;
  Tensor* values_ = nullptr;  // null: the flat values
};

}  // namespace peng
