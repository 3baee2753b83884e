// Parameters: named model weights with their gradients, stored in two flat f32 buffers,
// and the roles that tell the trainer, optimizer and checkpoints how to treat each one.
//
// Every Parameter's `value` and `grad` are views into the ParameterSet's flat buffers
// (`flat_values()`, `flat_grads()`), in registration order, so optimizers, gradient
// norms and data-parallel buckets can work on one contiguous range. The set never
// reallocates after `finalize()`; a set that is never finalized is a parameter table
// (names, shapes and roles of a model that was described, not built).
//
// Shapes. `global_shape` is the whole tensor as the model computes with it (the token
// embedding padded to a multiple of 128 x tp rows); `logical_shape` is what exists outside
// the model (checkpoints, exports, parameter counts): the same, or smaller where the
// global shape carries padding that stays zero. `shard` says which part of the global
// tensor this rank's `value` holds.
//
// Roles are data on the parameter, set by the layer that registers it; nothing outside a
// model family's Hugging Face mapping looks at names to decide behaviour.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "peng/core/tensor.h"

namespace peng {

// One of the fused blocks laid end to end along a split dimension (a GQA projection's
// [q | k | v]: H*hd, K*hd, K*hd rows), cut into `pieces` equal pieces over the group. With
// fewer pieces than ranks (K kv heads over tp > K ranks) each piece is replicated on
// parts / pieces consecutive ranks: rank r holds piece r / (parts / pieces). A block may
// be padded so that it splits evenly (an MLP of 136 features over 3 ranks: 138): its first
// `logical` elements are real, the rest zeros that stay zero (see padded_runs()).
struct ShardBlock {
  int64_t size = 0;     // extent along the split dimension
  int pieces = 0;       // a divisor of ShardSpec::parts
  int64_t logical = 0;  // real elements at the block's start (0: all `size`)
  int64_t real() const { return logical > 0 ? logical : size; }
};

// How a parameter is split over a tensor-parallel group of `parts` ranks, of which this is
// rank `index`: dimension `dim` of its global shape is a row of blocks, each cut into
// pieces; this rank holds its piece of every block, in block order. The blocks are `fused`
// when given, else `blocks` equal blocks each cut into `parts` pieces (c_attn's q|k|v
// columns: blocks = 3). dim = -1: replicated, every rank holds the whole tensor.
struct ShardSpec {
  int dim = -1;
  int parts = 1, index = 0, blocks = 1;
  std::vector<ShardBlock> fused = {};

  bool replicated() const { return dim < 0 || parts == 1; }
  // The blocks along a split dimension of `extent` elements (fused, or the equal blocks).
  std::vector<ShardBlock> layout(int64_t extent) const;
  // The piece of block `b` this rank holds, and its replica number among the ranks holding
  // that piece (0: the one that owns it in checkpoints and norms).
  int piece(const ShardBlock& b) const { return index / (parts / b.pieces); }
  int replica(const ShardBlock& b) const { return index % (parts / b.pieces); }
};

// How a parameter is initialised from the model seed (see CausalLM::init_random).
struct ParamInit {
  enum Kind { kNormal, kZeros, kOnes } kind = kNormal;
  double std = 0.02;  // kNormal
};

struct Parameter {
  std::string name;          // the model family's name, e.g. "h.0.attn.c_attn.weight"
  Tensor value;              // f32, this rank's shard, view into the flat value buffer
  Tensor grad;               // f32, same shape, view into the flat gradient buffer
  Shape global_shape;        // shape of the whole tensor as computed with (padding included)
  Shape logical_shape = {};  // the whole tensor as it exists outside the model (no padding)
  ShardSpec shard;           // which part of global_shape `value` holds
  int64_t offset = 0;        // first element in the flat buffers
  int64_t numel = 0;         // elements of this rank's shard (bound or not: ZeRO-3)

  // ---- roles ----
  bool weight_decay = false;  // AdamW decays it (tensors with >= 2 dims)
  ParamInit init = {};
  // Replicated over tp but each rank's gradient is a partial sum (norms under sequence
  // parallelism, where each rank saw its rows; per-head norms shared by heads on several
  // ranks): summed over tp before use. Replicated pieces of a split (ShardBlock) are
  // summed over their replicas likewise.
  bool tp_partial_grad = false;
  // Which layer's stage holds it under pipeline parallelism: a transformer layer index, or
  // -1 (before the first layer: the first stage, with the embedding) or n_layer (after the
  // last: the last stage, with the head).
  int layer = 0;
  // Tied parameters: one logical tensor held on several pipeline ranks (the token
  // embedding and a tied LM head). Every copy carries the group's name; gradients are
  // summed over the copies and values kept identical. Only the primary copy (on the lowest
  // stage) is saved, exported and counted in norms.
  std::string tie_group = {};
  bool tie_primary = true;
  // Counts in the FLOPs convention's N: takes part in matmuls (not a position embedding,
  // not an input embedding whose rows are only looked up).
  bool flops = true;
  // false: a buffer the model updates itself (a MoE router's selection bias), not the
  // optimizer. Its gradient stays zero and it has no weight decay, so AdamW leaves it
  // unchanged (m and v stay 0: the update is 0); it is saved and exported like a weight.
  bool trained = true;
  // One expert's weight in a layer whose experts are split over an expert-parallel group:
  // this rank registers only its own experts (the same count on every rank). Its gradient
  // is reduced over the expert-data-parallel ranks that hold the same expert, not over dp.
  bool expert_parallel = false;
};

// The local shape of a shard; throws naming the parameter when the split is uneven.
Shape shard_shape(const std::string& name, const Shape& global_shape, const ShardSpec& spec);
// This rank's shard of `full` (host, global shape), as a new host tensor.
Tensor take_shard(const Tensor& full, const Parameter& p);
// The whole tensor from every rank's shard (`pieces[i]` from group rank i), on the host.
Tensor join_shards(const std::vector<Tensor>& pieces, const Parameter& p);

// Padding: the global shape exceeds the logical one in at most one dimension, where the
// real elements are the first `real()` of each ShardBlock when the shard spec's `fused`
// blocks lie along it (per-block padding: a padded MLP's [gate | up]), else the first
// logical_shape[dim] (padding at the end: vocabulary rows). The padding is zero and stays
// zero: it computes nothing, gets no gradient, is never saved or exported.
struct PaddedRun {
  int64_t global_begin = 0, logical_begin = 0, length = 0;  // real elements along `dim`
};
// The runs of real elements along the padded dimension (*dim; -1 and none when unpadded)
// of a tensor of those shapes and shard spec (`name` for messages).
std::vector<PaddedRun> padded_runs(const std::string& name, const Shape& global_shape,
                                   const Shape& logical_shape, const ShardSpec& spec, int* dim);
// A logical tensor (host, f32) padded with zeros to p's global shape, and back.
Tensor pad_to_global(const Tensor& logical, const Parameter& p);
Tensor cut_to_logical(const Tensor& global, const Parameter& p);

// A flat element range [begin, end) of a parameter's local shard.
struct LocalRange {
  int64_t begin = 0, end = 0;
};
// The ranges of p's local shard this rank owns (every element of a logical tensor has one
// owner among the ranks holding it): all of it, or none for a tie copy that is not the
// primary and for a replicated parameter on tp ranks > 0 (`tp_rank`), or all but the
// pieces it holds as a replica > 0. Checkpoints write and norms count only owned ranges.
std::vector<LocalRange> owned_ranges(const Parameter& p, int tp_rank);
// The ranges of p's local shard that hold replicated pieces, with the replica count: their
// gradients are partial sums over the ranks holding the same piece (consecutive tp ranks).
struct ReplicaRange {
  LocalRange range;
  int replicas = 1;
};
std::vector<ReplicaRange> replica_ranges(const Parameter& p);

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
// The parts of `segments` inside the local ranges `keep(param)` returns.
std::vector<ParamSegment> restrict_segments(
    const std::vector<ParamSegment>& segments,
    const std::function<std::vector<LocalRange>(const Parameter&)>& keep);

class ParameterSet {
 public:
  explicit ParameterSet(Device device = Device::cpu()) : device_(device) {}
  ParameterSet(const ParameterSet&) = delete;
  ParameterSet& operator=(const ParameterSet&) = delete;

  // Registers a parameter of global shape `shape`, of which this rank holds `shard`; only
  // before finalize(). Its logical shape is `shape`, weight_decay is set for >= 2 dims,
  // every other role is at its default. Returns its index.
  int add(const std::string& name, const Shape& shape, const ShardSpec& shard = {});
  // Allocates the flat buffers (values and gradients zeroed) and binds the views.
  void finalize();
  bool finalized() const { return finalized_; }
  // ZeRO 3 (parallel/data_parallel/param_shards.h) keeps no flat buffers: it releases them
  // (every value and gradient unbound; ZeRO 2: the gradients only) and binds the parameters
  // inside a flat range [offset, offset + numel) to views of buffers of its own (element 0
  // at `offset`; an undefined tensor unbinds, a null pointer leaves that side as it is).
  // materialize_flat() allocates the flat values (and gradients) again, zeroed, and binds
  // them.
  void release_flat(bool values = true);
  void materialize_flat(bool grads = true);
  void bind(int64_t offset, int64_t numel, const Tensor* values, const Tensor* grads);

  std::vector<Parameter>& all() { return params_; }
  const std::vector<Parameter>& all() const { return params_; }
  Parameter& at(int index) { return params_[size_t(index)]; }
  const Parameter& at(int index) const { return params_[size_t(index)]; }
  // By name; nullptr when absent.
  Parameter* find(const std::string& name);
  const Parameter* find(const std::string& name) const;
  // By name; throws peng::Error naming the parameter when absent.
  Parameter& get(const std::string& name);
  const Parameter& get(const std::string& name) const;

  Tensor& flat_values() { return values_; }
  Tensor& flat_grads() { return grads_; }
  int64_t numel() const { return numel_; }
  // Zeroes the flat gradients (none while released: ZeRO-3's are fresh per reduction).
  void zero_grads() {
    if (grads_.defined()) grads_.zero();
  }

  // Forward and backward passes announce the layers (Parameter::layer) whose parameters
  // they are about to read, and when they are done with them: ZeRO-3 gathers a layer's
  // parameters (and, for backward, binds its gradients) on use and frees them after.
  // Without a hook the calls do nothing.
  enum class LayerUse { kForward, kBackward, kDone };
  void use_layer(int layer, LayerUse use) {
    if (layer_hook_) layer_hook_(layer, use);
  }
  void set_layer_hook(std::function<void(int, LayerUse)> hook) { layer_hook_ = std::move(hook); }
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
  bool finalized_ = false;
  Tensor values_, grads_;
  std::function<void(int64_t)> grads_ready_hook_;
  std::function<void(int, LayerUse)> layer_hook_;
};

}  // namespace peng
