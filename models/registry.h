// Model families: each registered once (models/registry.cc lists the built-in ones; a
// program adds its own with register_model_family), then looked up by
// name, by a Hugging Face config.json's model_type, or by preset — torchtitan's ModelSpec,
// Megatron's layer specs. Outside a family's folder nothing knows what a family is, but
// for checkpoints written before families existed, which are GPT-2's
// (launch/checkpointing.cc).
//
// A family (models/<family>/family.cc) supplies:
//   - its name and the Hugging Face model_type values it reads;
//   - presets with the real shapes, and defaults for sizes given by hand;
//   - `complete`: derives the sizes left unset (0) and refuses what the family cannot be,
//     naming the field;
//   - config.json parsing (refusing unknown model types and unsupported features by key)
//     and writing;
//   - the Hugging Face tensor mapping of its parameters (models/hf/hf_weights.h);
//   - a builder (DecoderModel for the decoder families).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "peng/models/hf/hf_config.h"
#include "peng/models/hf/hf_weights.h"
#include "peng/models/model.h"
#include "peng/parallel/expert_parallel/expert_group.h"
#include "peng/parallel/tensor_parallel/tp_group.h"

namespace peng {

struct ModelFamily {
  std::string name;                         // "gpt2", "llama"
  std::string description;                  // "GPT-2 (OpenAI)"
  std::vector<std::string> hf_model_types;  // config.json model_type values it reads
  std::vector<std::string> presets;
  DecoderConfig (*preset)(const std::string& name);
  DecoderConfig (*custom)();  // structure and defaults for sizes given by hand (0: unset)
  void (*complete)(DecoderConfig& c);
  DecoderConfig (*from_hf_config)(const JsonFields& fields);
  Json (*to_hf_config)(const DecoderConfig& c, DType weights);
  HfWeights (*hf_weights)(const DecoderConfig& c);
  std::unique_ptr<CausalLM> (*build)(const DecoderConfig& c, Backend& backend, const TpGroup& tp,
                                     const PipelineLayout& pipe, const ExpertGroup& experts,
                                     bool allocate);
};

// Every registered family, in registration order (the built-in ones first).
const std::vector<const ModelFamily*>& model_families();
// Adds a family from a program's own code (`family` must outlive every use: a static).
// `peng train`, checkpoints and Hugging Face import/export then find it by name, preset and
// model_type like the built-in ones. InputError: no name, a missing function, or a name,
// preset or model_type another family already has. Register before the first lookup (at
// the start of main); the registry is not guarded for concurrent registration.
void register_model_family(const ModelFamily& family);
// By name; InputError listing the known families when there is none.
const ModelFamily& model_family(const std::string& name);
// The family and config of a preset name; InputError listing every preset when unknown.
DecoderConfig model_preset(const std::string& name);

// DIR/config.json through the family its model_type names (an unknown model_type, a
// feature the family does not support: InputError naming the file and key).
DecoderConfig read_hf_config(const std::filesystem::path& dir);
// Writes DIR/config.json (created) for `c` with weights of `dtype`, through its family.
void write_hf_config(const std::filesystem::path& dir, const DecoderConfig& c,
                     DType weights = DType::kF32);
// The model's parameters from a Hugging Face folder (config must match: read_hf_config).
std::map<std::string, Tensor> load_hf_model(const std::filesystem::path& dir,
                                            const DecoderConfig& c);
// Writes config.json and the weights (logical parameters keyed by name) to DIR.
void save_hf_model(const std::filesystem::path& dir, const DecoderConfig& c,
                   const std::map<std::string, Tensor>& params, DType dtype = DType::kF32,
                   uint64_t max_shard_bytes = kHfMaxShardBytes);

// The model of `c` for one rank (see CausalLM), through its family's builder.
std::unique_ptr<CausalLM> build_model(const DecoderConfig& c, Backend& backend,
                                      const TpGroup& tp = {}, const PipelineLayout& pipe = {},
                                      const ExpertGroup& experts = {});
// The whole model's parameter table in registration order (nothing allocated): names,
// shapes and roles; value and grad are undefined.
std::vector<Parameter> parameter_table(const DecoderConfig& c);
// Parameters of the whole model (logical shapes, each tied tensor once); with
// `flops_only`, those that count in FLOPs (Parameter::flops).
int64_t count_parameters(const DecoderConfig& c, bool flops_only = false);

}  // namespace peng
