// `peng ckpt`: looks into sharded checkpoints and converts them (checkpoint/, and
// launch/checkpointing.h for the tensors a training run saves).
//
//   peng ckpt inspect DIR [--verify]
//   peng ckpt export DIR --to HF_DIR [--dtype f32|bf16|f16] [--max-shard-size 5GB]
//
// DIR is a committed checkpoint (a step-N folder holding manifest.pb) or a checkpoint root
// (`--checkpoint-dir`), which means its latest committed checkpoint. Only the manifest is
// trusted as far as checkpoint/manifest.h validates it; every tensor byte read is checked
// against its chunk checksum. Bad input throws peng::InputError naming the folder, file
// or tensor at fault (main() turns it into one `error:` line).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "peng/checkpoint.pb.h"
#include "peng/checkpoint/reader.h"
#include "peng/core/dtype.h"
#include "peng/core/tensor.h"
#include "peng/models/hf/hf_weights.h"

namespace CLI {
class App;
}

namespace peng {

// The report of `peng ckpt inspect` (without --verify): step, saved layout, model sizes,
// optimizer, lr schedule and data position, the data files with their sizes, a table of
// the tensors (name, shape, shards, bytes) and totals. `dir` is the checkpoint's folder.
std::string describe_checkpoint(const proto::Manifest& m, const std::filesystem::path& dir);

struct VerifyResult {
  int64_t tensors = 0;
  uint64_t bytes = 0;  // the tensors' f32 bytes
};
// Reads every tensor whole: checks every chunk checksum, the data files' sizes and that
// the shards cover each tensor exactly once. Throws InputError at the first failure.
VerifyResult verify_checkpoint(ckpt::CheckpointReader& reader);

// The model parameters of a checkpoint, whole, keyed by parameter name (without the
// "model/" prefix), as save_hf_model() takes them: exactly the parameters of the saved
// architecture (checkpoint_model()). Throws InputError naming a missing tensor.
std::map<std::string, Tensor> checkpoint_parameters(ckpt::CheckpointReader& reader);

// Writes the model of the checkpoint `dir` (resolved as above) to `to` as a Hugging Face
// folder (config.json, weights in `dtype`, sharded above `max_shard_bytes`). Returns the
// checkpoint folder read. For F32 the files are those `peng train --export-to` writes at
// the same step.
std::filesystem::path export_checkpoint(const std::filesystem::path& dir,
                                        const std::filesystem::path& to, DType dtype,
                                        uint64_t max_shard_bytes = kHfMaxShardBytes);

// Registers the `ckpt` subcommand (actions `inspect` and `export`) on app.
void add_ckpt_command(CLI::App& app);

}  // namespace peng
