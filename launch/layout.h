// TrainLayout: how one training job splits over its ranks, resolved and checked from the
// config, the launcher's world size and the model's sizes before anything is allocated.
// Every mistake (world != dp x tp x pp, a batch that does not split, heads or layers that
// do not divide, a pipeline schedule that cannot run) is an InputError naming the fields
// and the numbers. The pipeline schedule is built and checked for deadlocks here, before
// anything runs.
#pragma once

#include <cstdint>
#include <string>

#include "peng/config.pb.h"
#include "peng/models/decoder/config.h"
#include "peng/parallel/pipeline/schedule_registry.h"
#include "peng/parallel/pipeline/stage_split.h"
#include "peng/parallel/process_mesh.h"

namespace peng {

struct TrainLayout {
  MeshShape mesh;           // dp x tp x pp
  int64_t local_batch = 0;  // sequences per dp rank and step (batch rule, DESIGN.md)
  int64_t micro = 0;        // sequences per forward/backward
  int64_t micro_steps = 0;  // micro-batches per step = local_batch / micro
  bool sequence_parallel = false;
  std::string pp_schedule = "1f1b";  // a registered schedule (schedule_registry.h)
  int virtual_stages = 1;
  StageSplit split;   // layers of each of the pp x virtual_stages stages
  Schedule schedule;  // checked (check_schedule); empty without pipelining
  bool pipelined() const { return mesh.pp > 1 || virtual_stages > 1; }
};

// The layers of each of `stages` pipeline stages: parallel.pp_layers, else the split
// balanced by layer_costs() under pp_balance auto, else Megatron's first/last stage sizes,
// else even. InputError naming the flag when it does not fit the model.
StageSplit stage_split(const proto::ParallelConfig& parallel, const DecoderConfig& model,
                       int64_t seq_len, int stages);

// The start-up line of a pipelined layout: "pipeline stages: layers 1,3 | forward cost
// 1.00 1.12 (relative, layer_costs) | predicted bubble 0.231 (even split 0.250)", the bubble
// from check_schedule with each stage's compute weighted by its cost.
std::string describe_stages(const TrainLayout& layout, const DecoderConfig& model, int64_t seq_len);

TrainLayout resolve_layout(const proto::TrainConfig& config, int world_size,
                           const DecoderConfig& model);

}  // namespace peng
