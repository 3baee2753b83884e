// ParamShards: the per-unit gradients of ZeRO 2 and, for ZeRO 3 (DeepSpeed's stage 3,
// PyTorch FSDP's full sharding), the per-unit values too. Under ZeRO 3 parameters, gradients
// and AdamW state are sharded over dp: each rank keeps only its chunk of every unit, and a
// unit's whole values exist only while a pass uses them. Under ZeRO 2 the values stay in the
// flat buffer and only the gradients live per unit, so no rank holds the whole gradient.
//
// Units. layer_units() cuts the flat buffer into runs of parameters of one layer
// (Parameter::layer) and one tie group: a transformer layer, the embeddings, the head, a tied
// copy on its own (so that both copies of a tied tensor split alike over dp), expert weights
// and buffers the model updates itself (Parameter::trained false) apart from the rest. The
// GradReducer is built with these units as its buckets, so chunk r of a unit's gradient
// (reduce-scattered over dp) and chunk r of its values (values(), laid out like the reducer's
// shard) are the same elements: the optimizer updates values() from shard_grads() with no flat
// buffer.
//
// Passes. The model announces the layers it is about to read (ParameterSet::use_layer):
//   - forward or backward use (ZeRO 3): the layer's units are all-gathered over dp (padded
//     chunks, then bound as the parameters' values), unless already gathered;
//     a backward use also binds fresh zeroed gradients for them, unless bound;
//     the next layer in the pass's direction is prefetched: its gather starts now and is
//     waited for at its use;
//   - done (ZeRO 3): when no use remains, the values are freed (kept layers stay until
//     end_step()).
// Gradients are handed to the reducer when backward announces them complete (the reducer's
// grad source): it reduce-scatters them into its shard and frees them.
//
// Between steps, whole-model operations (resume, export) call materialize() for flat buffers
// holding every value, and release() to take this rank's chunks back from them (ZeRO 3).
//
// Collective: a unit's gathers run on the gather communicator of its reduction group (dp,
// or the expert-data-parallel group for expert weights), used only here, on the main
// thread, in the same order on every rank (each rank's passes are the same).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "peng/core/parameter.h"
#include "peng/parallel/communicator.h"
#include "peng/parallel/data_parallel/grad_reducer.h"

namespace peng {

// The units of `params`, in flat order.
std::vector<FlatSpan> layer_units(const ParameterSet& params);

class ParamShards {
 public:
  // ZeRO 3 (`gathers` given: for each reduction group of the reducer, dp's and under expert
  // parallelism the expert-data-parallel one, a communicator of the same ranks for the
  // gathers): `params` holds the initial values in its flat buffers; this keeps this rank's
  // chunks of them and releases the flat buffers. ZeRO 2 (`gathers` empty): only the flat
  // gradients are released. `reducer` was built over `params` with layer_units(params);
  // `keep`: layers whose values stay gathered from first use to end_step(). All must
  // outlive this.
  ParamShards(ParameterSet& params, GradReducer& reducer,
              const std::map<const Communicator*, Communicator*>& gathers, std::set<int> keep = {});
  ~ParamShards();
  ParamShards(const ParamShards&) = delete;
  ParamShards& operator=(const ParamShards&) = delete;

  // This rank's chunk of every unit's values, laid out like reducer.shard_grads().
  Tensor& values() { return values_; }
  // The step is over (after the model's own buffer updates): kept layers and unused
  // prefetches are freed, replicated units' chunks follow their values.
  void end_step();
  // Flat buffers with every value, gathered (collective over the group); release() takes
  // this rank's chunks from them (they may have changed: a resume) and frees them.
  void materialize();
  void release();
  // A parameter that is a unit of its own (a tied copy): its chunk in `shard`, a buffer laid
  // out like values().
  Tensor chunk_of(Tensor& shard, const Parameter& p) const;
  // The most bytes of gathered values and unreduced gradients held at once so far.
  int64_t peak_unit_bytes() const { return peak_bytes_; }

 private:
  struct Unit {
    size_t bucket;  // the reducer's bucket of this unit
    int layer;
    Tensor values, grads;                  // gathered (padded), bound gradients (padded)
    std::unique_ptr<Work> pending;         // a prefetch in flight into `values`
    Communicator* gather_group = nullptr;  // ZeRO 3: where its chunks are gathered
    // ZeRO 3: a buffer the model updates itself (Parameter::trained false, a router's
    // selection bias): kept whole on every rank, its chunk refreshed at end_step().
    bool replicated = false;
    int uses = 0;
  };
  void on_use(int layer, ParameterSet::LayerUse use);
  void start_gather(Unit& u);
  void finish_gather(Unit& u);
  void free_values(Unit& u);
  Tensor take_grads(size_t bucket);
  void prefetch_after(int layer, bool backward);
  void count(int64_t bytes);

  ParameterSet& params_;
  GradReducer& reducer_;
  bool sharded_;  // ZeRO 3: the values too
  // The last forward or backward use announced: prefetches follow the pass's direction.
  ParameterSet::LayerUse last_use_ = ParameterSet::LayerUse::kDone;
  int last_layer_ = 0;
  std::set<int> keep_;
  std::vector<Unit> units_;
  std::vector<int> layers_;  // the layers units_ belong to, ascending
  std::vector<int> unit_of_bucket_;
  Device device_;
  Tensor values_;  // ZeRO 3: this rank's value chunks
  int64_t bytes_ = 0, peak_bytes_ = 0;
};

}  // namespace peng
