// What tells the three families of this folder apart, and the pieces family.cc assembles.
#pragma once

#include <string>

#include "peng/models/decoder/config.h"
#include "peng/models/hf/hf_config.h"

namespace peng::llama {

enum class Variant { kLlama, kQwen2, kQwen3 };

// The family name, Hugging Face model_type and architecture of a variant.
const char* family_name(Variant v);
const char* architecture(Variant v);
Variant variant_of(const DecoderConfig& c);

// The variant's structure with every size 0 (unset) and Hugging Face's defaults.
DecoderConfig base_config(Variant v);
// Derives unset sizes (n_kv_head = n_head, head_dim = n_embd / n_head or Qwen3's 128,
// max_seq_len 2048) and checks the variant's constraints, naming the field.
void complete_config(Variant v, DecoderConfig& c);

// config.json of the variant; unknown model types and unsupported features are refused by
// key (sliding-window attention, rope_scaling other than "llama3", hidden_act other than
// "silu", attention dropout, pretraining_tp > 1).
DecoderConfig parse_hf_config(Variant v, const JsonFields& f);
Json hf_config_json(const DecoderConfig& c, DType dtype);

// The presets of the variant (llama3.2-1b, ... qwen3-8b), with the real shapes.
const std::vector<std::string>& preset_names(Variant v);
DecoderConfig preset(const std::string& name);

}  // namespace peng::llama
