// CausalLM: the one contract between a model and everything that trains, checkpoints,
// exports, counts and samples it (launch/, checkpoint tools, telemetry, tests).
//
// A model is built for one rank: its tensor-parallel group (it holds its shard of every
// weight; every method below is then collective over tp, in the same order on every rank)
// and the pipeline stages it holds (PipelineLayout). Its parameters (a ParameterSet whose
// roles say how each is treated: shards, tied copies, partial gradients, stage, decay,
// init, FLOPs, experts) are all the trainer sees of its weights. A Mixture-of-Experts model
// also knows its ExpertGroup (which experts it holds, whom it routes tokens with); no model
// knows its data-parallel placement.
//
// Pipeline chunks. With pp ranks and v virtual stages there are S = pp * v stages of
// consecutive layers (PipelineLayout::split: n_layer / S each unless given); this rank holds
// chunks c = 0..v-1, the global stages c * pp + rank.
// Stage 0 starts with the token (and position) embedding, the last stage ends with the
// final norm, the LM head and the loss. Without pipeline parallelism there is one chunk.
//
// Per micro-batch and chunk: forward_chunk, then (after any number of other chunks' or
// micro-batches' passes, the activations moved aside with stash_activations and back with
// restore_activations) backward_chunk. Backward ADDS scale * d(sum of per-position losses)
// into the gradients and announces finished gradients as it goes
// (ParameterSet::grads_ready_from): after the head, after each layer from the last to the
// first, and 0 after the embedding.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "peng/core/backend.h"
#include "peng/core/parameter.h"
#include "peng/models/decoder/config.h"
#include "peng/models/nn/recompute.h"
#include "peng/models/nn/routing_stats.h"
#include "peng/parallel/pipeline/stage_split.h"

namespace peng {

struct PipelineLayout {
  int pp = 1, rank = 0, virtual_stages = 1;
  // Layers of each global stage (parallel/pipeline/stage_split.h); empty: n_layer / stages()
  // each.
  StageSplit split = {};
  int stages() const { return pp * virtual_stages; }
  // The split in use for a model of n_layer layers (InputError when it does not fit).
  StageSplit layers(int n_layer) const;
  // The first layer of global stage `stage`.
  int first_layer(int stage, int n_layer) const;
  bool first_rank() const { return rank == 0; }      // holds stage 0
  bool last_rank() const { return rank == pp - 1; }  // holds the last stage
};

// Where the last stage leaves the loss of a forward with targets.
struct LossOut {
  // The mean over the B*T positions, read on the host (waits for the device).
  double* mean = nullptr;
  // An f64 (1) tensor on the backend's device: += the sum of the per-position losses, queued
  // without waiting (the trainer reads its accumulators once per step).
  Tensor* sum = nullptr;
  LossOut(double* mean_out = nullptr) : mean(mean_out) {}  // implicit: forward_chunk(.., &loss)
  static LossOut sum_into(Tensor& acc) {
    LossOut out;
    out.sum = &acc;
    return out;
  }
};

// The global pipeline stage holding a parameter of layer `layer` (Parameter::layer: -1 the
// embedding, n_layer the head) in a model of n_layer layers under `pipe`.
int stage_of_layer(int layer, int n_layer, const PipelineLayout& pipe);

class CausalLM {
 public:
  virtual ~CausalLM() = default;

  virtual const DecoderConfig& arch() const = 0;
  virtual ParameterSet& parameters() = 0;
  virtual Backend& backend() = 0;
  virtual const PipelineLayout& pipeline() const = 0;

  // ---- state ----
  // The same numbers on every layout: every parameter of the whole model is drawn in
  // table order from `seed` by its ParamInit (the real vocabulary rows only); each rank
  // keeps what it holds.
  virtual void init_random(uint64_t seed) = 0;
  // Loads every parameter this rank holds from logical tensors keyed by parameter name
  // (host, any float dtype, logical shapes). Throws naming a missing or misshapen tensor.
  virtual void load_state(const std::map<std::string, Tensor>& tensors) = 0;
  // This rank's parameters (its stages) as logical f32 host tensors, gathered over tp.
  virtual std::map<std::string, Tensor> state() const = 0;

  // ---- training ----
  // Chunk c's part of forward. tokens (B, T) i32, T <= max_seq_len. The first stage reads
  // `tokens`, the others `x` (R, C), the previous stage's output (R = boundary_rows(B*T)).
  // `tokens` and `targets` may be host or device tensors (copied to the device as needed).
  // The last stage computes the loss over B*T positions into `loss` (LossOut) when
  // `targets` (B, T) is defined, or only the logits when it is not, and returns an undefined
  // tensor; the others return their output (R, C), valid until this chunk's next forward.
  virtual const Tensor& forward_chunk(int chunk, const Tensor& tokens, const Tensor& x,
                                      const Tensor& targets, const LossOut& loss) = 0;
  // Backward of chunk c's last forward: the last stage starts from scale * sum of losses,
  // the others from `dout` (R, C). Returns dL/dx (R, C), valid until the next backward;
  // undefined on the first stage.
  virtual const Tensor& backward_chunk(int chunk, const Tensor& dout, float scale) = 0;
  // Chunk c's activations of its last forward, moved out (the chunk's next forward
  // allocates fresh buffers) and moved back before that forward's backward.
  virtual std::vector<Tensor> stash_activations(int chunk) = 0;
  virtual void restore_activations(int chunk, std::vector<Tensor>&& saved) = 0;
  // Rows of a stage boundary's tensor for `positions` = B*T positions (B*T / tp under
  // sequence parallelism, when that divides); its columns are arch().n_embd.
  virtual int64_t boundary_rows(int64_t positions) const = 0;

  // ---- sampling ----
  // Row `row` of the last forward's logits over the whole padded vocabulary, on the host
  // (gathered over tp). Only the first vocab_size entries are meaningful.
  virtual Tensor logits_row(int64_t row) = 0;
  int64_t padded_vocab() const { return arch().padded_vocab(tp_size()); }
  virtual int tp_size() const = 0;

  // ---- memory ----
  // What each transformer layer recomputes in backward instead of keeping: `policy` for the
  // first policy.layers layers of each stage (all with -1), nothing for the others.
  virtual void set_recompute(const RecomputePolicy& policy) = 0;
  // The bytes of every activation this rank keeps now, each storage counted once (`seen`:
  // storages already counted elsewhere, such as a pipeline's stash): after a forward, what
  // its backward will read (launch/memory_plan.h predicts it).
  virtual int64_t kept_activation_bytes(std::set<const void*>& seen) = 0;
  int64_t kept_activation_bytes() {
    std::set<const void*> seen;
    return kept_activation_bytes(seen);
  }

  // ---- Mixture of Experts (nothing for a dense model) ----
  // A training step's routing statistics start over (call before its first forward).
  virtual void begin_step() {}
  // The step's statistics of every MoE layer this rank holds (its stages), in layer order.
  virtual std::vector<RoutingStats> routing_stats() const { return {}; }
  // After the optimizer step: DeepSeek-V3's selection-bias updates from the step's counts.
  virtual void update_routing_biases() {}
  // Which tokens the balance loss's gradient is taken over (models/nn/moe.h): kStep (the
  // default) when every forward of a step comes before its backwards, kMicroBatch when a
  // schedule interleaves them.
  virtual void set_balance_scope(BalanceScope) {}

  // Without pipeline parallelism: forward of the whole model (the mean loss; 0 without
  // targets) and its backward.
  double forward(const Tensor& tokens, const Tensor& targets);
  // The same forward, adding the sum of its per-position losses into `loss_sum` (f64 (1) on
  // the backend's device) without waiting for the device.
  void forward_sum_into(const Tensor& tokens, const Tensor& targets, Tensor& loss_sum);
  void backward(float scale);
};

}  // namespace peng
