// Checkpoints of a training run, on the trainer's side: which elements each rank saves
// and restores, the manifest's training state, and which checkpoint --resume means.
//
// Logical tensors (layout-independent names and shapes, Parameter::logical_shape):
//   model/<param>               the f32 parameter values (no vocabulary padding)
//   optim/exp_avg/<param>       AdamW's first moment
//   optim/exp_avg_sq/<param>    AdamW's second moment
// Saving, every element is written once: the flat parameter buffer is split over the dp
// ranks (ZeRO >= 1: each rank's optimizer shard; ZeRO 0: dp equal ranges, and each expert
// weight split over the ranks holding that expert), and of the
// ranks holding an element only its owner writes it (owned_ranges(): tp rank 0 for
// replicated parameters, replica 0 of a replicated piece, the primary copy of a tied one).
// Loading, each rank reads its whole parameter shards and the moments of the spans its
// optimizer updates, under whatever layout it runs now.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "peng/checkpoint.pb.h"
#include "peng/checkpoint/box.h"
#include "peng/config.pb.h"
#include "peng/core/parameter.h"
#include "peng/launch/layout.h"
#include "peng/models/decoder/config.h"
#include "peng/optim/adamw.h"

namespace peng {

namespace cuda {
class PinnedBuffer;
}

// A host copy of a rank's training state when it lives on a GPU, in pinned memory: the flat
// parameter values and both AdamW moments, each in its own layout. Checkpoint regions point
// into it instead of the device tensors: a save first copies the device state here
// (stage_to_host, at the step boundary), a load reads into it and then copies it onto the
// device (stage_to_device). The checkpoint format is the same as from host state.
class HostStaging {
 public:
  HostStaging(int64_t values, int64_t state);  // element counts
  ~HostStaging();
  float* values() const;
  float* exp_avg() const;
  float* exp_avg_sq() const;

 private:
  std::unique_ptr<cuda::PinnedBuffer> buffer_;  // values, then exp_avg, then exp_avg_sq
  int64_t values_, state_;
};

struct RankState {
  ParameterSet* params = nullptr;
  AdamW* optimizer = nullptr;
  std::vector<FlatSpan> optim_spans;  // what the optimizer updates, in its state layout
  bool sharded_optimizer = false;     // ZeRO >= 1: optim_spans are disjoint over dp
  int dp_rank = 0, dp_size = 1;
  // The ranks holding the same experts (expert parallelism: dp / ep of them; else dp).
  int expert_dp_rank = 0, expert_dp_size = 1;
  int tp_rank = 0;                 // for owned_ranges()
  HostStaging* staging = nullptr;  // set when the state is on a GPU: regions point here
  // ZeRO-3: the values too are sharded, laid out like the optimizer state (saves read them
  // there; loads need the flat values materialized: ParamShards::materialize()).
  const Tensor* value_shard = nullptr;
};

// Regions over the state's host memory (the staging copy when there is one).
std::vector<ckpt::Region> save_regions(const RankState& s);
std::vector<ckpt::Region> load_regions(const RankState& s);
// With staging: the device state copied into it (waits for the device), or the staging
// copied onto the device. No-ops for host state.
void stage_to_host(const RankState& s);
void stage_to_device(const RankState& s);

// The manifest fields of a save after `step` completed steps (everything but the tensors).
proto::Manifest checkpoint_meta(const proto::TrainConfig& config, const DecoderConfig& model,
                                const TrainLayout& layout, int world_size, int64_t step,
                                int64_t next_sequence, const AdamW& optimizer);

// The checkpoint `config.checkpoint().resume` names: auto = the newest committed one in
// checkpoint.dir (nullopt when there is none), none = nullopt, else the path: a committed
// checkpoint, or a checkpoint root (its auto choice).
std::optional<std::filesystem::path> resume_path(const proto::CheckpointConfig& config);

// InputError naming the field when the checkpoint's model differs from `model`.
void check_resumable(const proto::Manifest& m, const DecoderConfig& model,
                     const std::filesystem::path& dir);

// The architecture a checkpoint was saved with (InputError naming the checkpoint when it
// makes no model).
DecoderConfig checkpoint_model(const proto::Manifest& m, const std::filesystem::path& dir);

}  // namespace peng
