// Building the model a config asks for: from a Hugging Face folder (model.init_from),
// a preset, or explicit sizes, with GPT-2's random init from model.seed.
#pragma once

#include <memory>

#include "core/backend.h"
#include "models/gpt2/gpt2.h"
#include "peng/config.pb.h"

namespace peng {

// Throws InputError naming the field when sizes are missing, conflicting or invalid.
Gpt2Config resolve_model_config(const proto::TrainConfig& config);

// The model of the resolved hyper-parameters `model` with its initial weights
// (model.init_from's weights, or the random init from model.seed).
// Over a tensor-parallel group each rank builds its shards, under pipeline parallelism its
// stages.
std::unique_ptr<Gpt2Model> build_model(const proto::TrainConfig& config, const Gpt2Config& model,
                                       Backend& backend, const TpGroup& tp = {},
                                       const PipelineLayout& pipe = {});

}  // namespace peng
