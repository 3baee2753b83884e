// Parameters: named model weights with their gradients, stored in two flat f32 buffers.
//
// Every Parameter's `value` and `grad` are views into the ParameterSet's flat buffers
// (`flat_values()`, `flat_grads()`), in registration order, so optimizers, gradient
// norms and (later) data-parallel buckets can work on one contiguous range.
// `global_shape` is the logical shape of the full tensor; without sharding it equals
// value.shape(). The set never reallocates after `finalize()`.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace peng {

struct Parameter {
  std::string name;           // Hugging Face style, e.g. "h.0.attn.c_attn.weight"
  Tensor value;               // f32, view into the flat value buffer
  Tensor grad;                // f32, same shape, view into the flat gradient buffer
  Shape global_shape;         // logical shape of the whole tensor
  int64_t offset = 0;         // first element in the flat buffers
  bool weight_decay = false;  // AdamW decays tensors with >= 2 dims only
};

// A range [offset, offset + numel) of the flat buffers, and where its gradient and
// optimizer state sit in a (possibly sharded) buffer: at `state_offset`.
struct FlatSpan {
  int64_t offset = 0, numel = 0, state_offset = 0;
};

class ParameterSet {
 public:
  explicit ParameterSet(Device device = Device::cpu()) : device_(device) {}
  ParameterSet(const ParameterSet&) = delete;
  ParameterSet& operator=(const ParameterSet&) = delete;

  // Registers a parameter; only before finalize(). Returns its index.
  int add(const std::string& name, const Shape& shape);
  // Allocates the flat buffers (values and gradients zeroed) and binds the views.
  void finalize();

  std::vector<Parameter>& all() { return params_; }
  const std::vector<Parameter>& all() const { return params_; }
  Parameter& at(int index) { return params_[size_t(index)]; }
  // By name; throws peng::Error naming the parameter when absent.
  Parameter& get(const std::string& name);
  const Parameter& get(const std::string& name) const;

  Tensor& flat_values() { return values_; }
  Tensor& flat_grads() { return grads_; }
  int64_t numel() const { return numel_; }
  void zero_grads() { grads_.zero(); }

  // Backward passes announce, with non-increasing offsets ending at 0, that every gradient
  // element at flat offset >= `offset` is final for this backward. A data-parallel
  // reducer listens (set_grads_ready_hook) to reduce completed buckets while the rest of
  // the backward pass runs. Without a hook the calls do nothing.
  void grads_ready_from(int64_t offset) {
    if (grads_ready_hook_) grads_ready_hook_(offset);
  }
  void set_grads_ready_hook(std::function<void(int64_t)> hook) {
    grads_ready_hook_ = std::move(hook);
  }

 private:
  Device device_;
  std::vector<Parameter> params_;
  std::map<std::string, int> index_;
  int64_t numel_ = 0;
  Tensor values_, grads_;
  std::function<void(int64_t)> grads_ready_hook_;
};

}  // namespace peng
