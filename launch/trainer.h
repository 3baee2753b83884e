// Trainer: the training job behind `peng train`, in phases a reader can follow:
//
//   Trainer(config)   build: validate, layout, process mesh, model (any registered family),
//                     pipeline runner, data, gradient machinery, optimizer, checkpoints,
//                     telemetry — in that order (each needs the ones before it)
//   run()             restore (resume from a checkpoint), then per step:
//                       step()        zero gradients; forward/backward of the micro-batches
//                                     (step_micro_batches, or step_pipeline under pp);
//                                     make gradients whole (dp reduction, tied copies,
//                                     partial sums); global norm, clipping, AdamW
//                       after_step()  metrics, validation, samples, stop signals, checkpoint
//                     then finish() (final checkpoint wait, export, summary)
//
// Per optimizer step s: for each micro-batch read its sequences of the global batch (batch
// rule, DESIGN.md), forward, backward with scale 1/(B*T) so the accumulated gradient is that
// of the mean loss over the global batch. Prints to stdout; writes the metrics JSONL.
//
// Device (training.device, launch/device.h): the model, gradients, optimizer state and the
// token batches live on the backend's device (backend_for). On a GPU the host waits for it
// only where it needs values: once per step for the loss and the gradient norm (summed on
// the device into one f64 pair, read together before clipping), at the step's end for the
// phase times (CUDA events, telemetry/phase_timer.h), and for evaluation, samples, exports
// and checkpoints between steps (state staged through pinned host memory).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "peng/config.pb.h"
#include "peng/core/data/token_shard.h"

namespace peng {

struct StepRecord {
  int64_t step = 0;
  double loss = 0, grad_norm = 0, lr = 0, tokens_per_s = 0, step_time_s = 0;
};

struct TrainReport {
  std::vector<StepRecord> steps;
  std::vector<std::pair<int64_t, double>> val_losses;  // (step, val_loss)
  double seconds = 0;
  int64_t tokens = 0;
  double flops_per_token = 0;
  double checkpoint_stall_s = 0;  // seconds training waited for checkpoint saves
};

// What a step callback asks for.
struct StepAction {
  // Extra figures of this step, written as "user/<name>" into its metrics JSONL line (rank
  // 0's values) and, when TensorBoard is on, as scalars. A name must not be empty.
  std::vector<std::pair<std::string, double>> metrics = {};
  // Stop after this step: the ranks agree (any rank's request stops them all after the same
  // step), a checkpoint is saved when checkpoints are configured, and run() returns normally.
  bool stop = false;
};

// How a program changes the training loop without forking it (all optional; empty: the
// config decides). Callbacks run on every rank, on the thread that called run().
struct TrainerHooks {
  // Called after every optimizer step with its record (loss, grad norm, lr: the same on
  // every rank).
  std::function<StepAction(const StepRecord& record)> on_step = {};
  // Training tokens from the program instead of data.train (core/data/token_shard.h): the
  // batch rule applies to it as to shard files. It must hold the same tokens on every rank.
  std::shared_ptr<const TokenSource> train_data = {};
  // The learning rate of step `step` (0-based) instead of the config's schedule; must be
  // finite, >= 0 and the same on every rank.
  std::function<double(int64_t step)> lr = {};
};

// One training job in phases (see the top of this file): build in the constructor, run().
class Trainer {
 public:
  // Builds every component (collective over the job's ranks). Throws peng::Error on bad
  // input, naming the field, file or tensor.
  explicit Trainer(const proto::TrainConfig& config, TrainerHooks hooks = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains from the resumed step (or 0) to training.steps. Throws peng::Error on a
  // non-finite loss.
  TrainReport run();

  struct Parts;  // the components, in build order (opaque: trainer.cc)

 private:
  struct StepTimes;

  void restore();
  StepRecord step(int64_t step);
  void step_micro_batches(int64_t step, StepTimes& t);
  void step_pipeline(int64_t step, StepTimes& t);
  // Returns the stop signal all ranks agreed on (0: none).
  int after_step(int64_t step, const StepRecord& r);
  void save_checkpoint(int64_t step);
  void finish(int stopped_by);
  std::string summary() const;

  std::unique_ptr<Parts> p_;
};

// Runs the whole job described by `config`: Trainer(config).run().
TrainReport train(const proto::TrainConfig& config);

}  // namespace peng
