// PipelineRunner: runs one training step's pipeline schedule (parallel/pipeline/schedule.h)
// on this rank's stages of a model (CausalLM), moving activations and their gradients
// between pipeline ranks with the pp communicator. Any schedule that check_schedule()
// accepts runs: the runner only follows its actions.
//
// Activations: after each forward the chunk's activations are stashed per micro-batch
// (CausalLM::stash_activations: buffer handles moved out, no copy) and moved back for its
// backward, so nothing is recomputed; in flight at once: 1F1B at most pp - r micro-batches
// per chunk, GPipe all m. A stage output is dropped at its backward; the input gradients
// sent back are kept until the end of the step (one per micro-batch).
// Transfers: sends are non-blocking and finished at the end of the step; receives block;
// tags from p2p_tag(), the same at both ends.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "peng/models/model.h"
#include "peng/parallel/communicator.h"
#include "peng/parallel/pipeline/schedule.h"
#include "peng/telemetry/phase_timer.h"

namespace peng {

// Step timing of a PipelineRunner (telemetry/phase_timer.h): the model's forward and backward
// passes as phases of `timer`, their seconds into *forward_s and *backward_s; the rest of the
// schedule (transfers, waits, bookkeeping) into *other_s. Null slots drop their time.
struct PipelineTiming {
  PhaseTimer* timer = nullptr;
  double* forward_s = nullptr;
  double* backward_s = nullptr;
  double* other_s = nullptr;
};

class PipelineRunner {
 public:
  // Micro-batch m's tokens and targets (B_micro, T); valid until the next call.
  using MicroBatch = std::function<std::pair<const Tensor*, const Tensor*>(int micro)>;

  // `schedule` has one action list per pipeline rank for `micro_batches` micro-batches over
  // the model's virtual stages, checked by check_schedule(); `activation` is the shape of a
  // stage boundary's tensor: (rows, C).
  PipelineRunner(CausalLM& model, Communicator& pp, Schedule schedule, int micro_batches,
                 Shape activation);

  using Timing = PipelineTiming;

  // Forward and backward of every micro-batch, gradients scaled by `grad_scale` and
  // accumulated. Returns the sum over micro-batches of their mean loss on the rank holding
  // the last stage, 0 on the others; with `loss_sum` (f64 (1) on the model's device) the
  // last stage adds the sum of its per-position losses there instead, without waiting for
  // the device, and returns 0.
  double train(const MicroBatch& batch, float grad_scale, Tensor* loss_sum = nullptr,
               const Timing& timing = {});
  // Forward only (validation), the same return value and `loss_sum`.
  double evaluate(const MicroBatch& batch, Tensor* loss_sum = nullptr);
  // tokens (1, len) through every stage: the last position's logits over the whole padded
  // vocabulary, on every rank (for sampling; sample_tokens' LastLogits).
  Tensor last_logits(const Tensor& tokens);
  const Schedule& schedule() const { return schedule_; }
  // The last train()'s bubble on this rank: the fraction of its time spent waiting for
  // transfers (receives, and the sends still in flight at the end) rather than computing.
  double bubble() const { return bubble_; }
  // The most activation bytes the stash has held at once so far (every micro-batch chunk
  // whose backward had not run; each storage counted once).
  int64_t peak_stash_bytes() const { return peak_stash_bytes_; }

 private:
  using Key = std::pair<int, int>;  // (micro, chunk)
  const Tensor& forward(int micro, int chunk, const MicroBatch& batch, const LossOut& loss,
                        const Timing& timing);
  void lap(const Timing& timing, double* slot) {
    if (timing.timer) timing.timer->lap(slot);
  }
  Device device() { return model_.backend().device(); }
  int64_t stash_bytes() const;
  int stage(int chunk) const { return stage_of(chunk, rank_, pp_size_); }
  bool last_stage(int chunk) const { return stage(chunk) == pp_size_ * v_ - 1; }

  CausalLM& model_;
  Communicator& pp_;
  int rank_, pp_size_, v_, micro_batches_;
  Shape activation_;
  Schedule schedule_;
  std::map<Key, Tensor> act_in_, act_out_, grad_in_, grad_out_;
  std::map<Key, std::vector<Tensor>> stash_;  // activations of forwards awaiting backward
  std::map<std::pair<Key, int>, std::unique_ptr<Work>> sends_;  // (key, Action::Op) in flight
  double bubble_ = 0;
  int64_t peak_stash_bytes_ = 0;
};

}  // namespace peng
