// Hugging Face weight folders: model.safetensors, or the shards that
// model.safetensors.index.json lists (model-00001-of-0000N.safetensors ...), read into and
// written from a model family's parameters through the family's mapping (HfWeights).
//
// Reading checks everything before a tensor is used and throws peng::InputError naming the
// file and the tensor at fault: every parameter present exactly once with exactly its
// shape, no tensor the mapping does not know (a wrong file is never silently accepted),
// dtypes F32, BF16 or F16 (converted to f32 exactly), no non-finite value. Writing produces
// what Hugging Face's save_pretrained writes: tensors in mapping order with metadata
// {"format": "pt"}, one file up to `max_shard_bytes` of tensor data, else shards and an
// index (its JSON with sorted keys, indent 2). Both files and config are written atomically.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "peng/core/dtype.h"
#include "peng/core/tensor.h"

namespace peng {

// One parameter as stored: one tensor, or several concatenated along dimension 0 (a fused
// projection such as [q | k | v] stored as q_proj, k_proj, v_proj).
struct HfTensor {
  std::string param;                                 // the family's parameter name
  std::vector<std::pair<std::string, Shape>> parts;  // Hugging Face names and shapes
};

// How a family's parameters sit in a Hugging Face folder.
struct HfWeights {
  std::vector<HfTensor> tensors;  // every parameter, in the order they are written
  std::string read_prefix;        // also accepted (and dropped) in front of names when reading
  // Tensors skipped when reading (buffers, a tied head stored anyway), with the shape they
  // must have when it is known.
  std::map<std::string, std::optional<Shape>> ignored;
  std::string model;  // for messages: "a GPT-2 model with n_layer=2, n_embd=64, ..."
};

// HF's default max_shard_size ("5GB" = 5e9 bytes).
constexpr uint64_t kHfMaxShardBytes = 5'000'000'000;
// A size as save_pretrained's max_shard_size takes it: "5GB", "500MB", "2GiB", "100KB" or
// bytes ("1000000"). InputError naming `what` for anything else or 0.
uint64_t parse_shard_size(const std::string& text, const std::string& what);

// The parameters of `w` read from DIR, as f32 CPU tensors keyed by parameter name.
std::map<std::string, Tensor> read_hf_weights(const std::filesystem::path& dir, const HfWeights& w);

// Writes `params` (keyed by parameter name, any device and float dtype, exactly the
// parameters of `w` with their mapped shapes) to DIR (created) in `dtype` (F32, BF16 or
// F16; round to nearest even). Removes stale weight files of another sharding. For F32,
// read_hf_weights(write_hf_weights(x)) == x bit for bit.
void write_hf_weights(const std::filesystem::path& dir, const HfWeights& w,
                      const std::map<std::string, Tensor>& params, DType dtype,
                      uint64_t max_shard_bytes = kHfMaxShardBytes);

}  // namespace peng
