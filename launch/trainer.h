// The single-process training loop behind `peng train`.
//
// Per optimizer step s: zero gradients; for each micro-batch read its sequences of the
// global batch (batch rule, DESIGN.md), forward, backward with scale 1/(B*T) so the
// accumulated gradient is that of the mean loss over the global batch; global gradient
// norm, clipping, AdamW at lr = schedule(s). Then metrics, progress, validation,
// samples. Prints to stdout; writes the metrics JSONL.
#pragma once

#include <cstdint>
#include <vector>

#include "peng/config.pb.h"

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

// Runs the whole job described by `config` (validated here). Throws peng::Error on
// bad input or a non-finite loss.
TrainReport train(const proto::TrainConfig& config);

}  // namespace peng
