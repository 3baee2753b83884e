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

// How a parameter is split over a tensor-parallel group: dimension `dim` of its logical
// (global) shape, seen as `blocks` equal blocks, each cut into `parts` equal pieces; this
// rank holds piece `index` of every block (c_attn's q|k|v columns: blocks = 3).
// dim = -1: replicated, every rank holds the whole tensor.
struct ShardSpec {
  int dim = -1;
  int parts = 1, index = 0, blocks = 1;
  bool replicated() const { return dim < 0 || parts == 1; }
};

struct Parameter {
  std::string name;           // Hugging Face style, e.g. "h.0.attn.c_attn.weight"
  Tensor value;               // f32, this rank's shard, view into the flat value buffer
  Tensor grad;                // f32, same shape, view into the flat gradient buffer
  Shape global_shape;         // logical shape of the whole tensor
  ShardSpec shard;            // which part of it `value` holds
  int64_t offset = 0;         // first element in the flat buffers
  bool weight_decay = false;  // AdamW decays tensors with >= 2 dims only
  // Replicated over tp but each rank's gradient is a partial sum (LayerNorms under
  // sequence parallelism: each rank saw its rows): summed over tp before use.
  bool tp_partial_grad = false;
};

// The local shape of a shard; throws naming the parameter when the split is uneven.
Shape shard_shape(const std::string& name, const Shape& global_shape, const ShardSpec& spec);
// This rank's shard of `full` (host, global shape), as a new host tensor.
Tensor take_shard(const Tensor& full, const Parameter& p);
// The whole tensor from every rank's shard (`pieces[i]` from piece index i), on the host.
Tensor join_shards(const std::vector<Tensor>& pieces, const Parameter& p);

// A range [offset, offset + numel) of the flat buffers, and where its gradient and
// optimizer state sit in a (possibly sharded) buffer: at `state_offset`.
struct FlatSpan {
  int64_t offset = 0, numel = 0, state_offset = 0;
};

class ParameterSet;

// A piece of a FlatSpan inside one parameter (so it has one weight-decay setting, one
// shard spec).
struct ParamSegment {
  FlatSpan span;
  const Parameter* param;
};
// `spans` cut at parameter boundaries, in order.
std::vector<ParamSegment> split_at_parameters(const ParameterSet& params,
                                              const std::vector<FlatSpan>& spans);

class ParameterSet {
 public:
  explicit ParameterSet(Device device = Device::cpu()) : device_(device) {}
  ParameterSet(const ParameterSet&) = delete;
  ParameterSet& operator=(const ParameterSet&) = delete;

  // Registers a parameter of logical shape `shape`, of which this rank holds `shard`;
  // only before finalize(). Returns its index.
  int add(const std::string& name, const Shape& shape, const ShardSpec& shard = {});
  // Allocates the flat buffers (values and gradients zeroed) and binds the views.
  void finalize();

  std::vector<Parameter>& all() { return params_; }
  const std::vector<Parameter>& all() const { return params_; }
  Parameter& at(int index) { return params_[size_t(index)]; }
  // By name; nullptr when absent.
  Parameter* find(const std::string& name);
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
