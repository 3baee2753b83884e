// Building the model a config asks for: from a Hugging Face folder (model.init_from), a
// preset, or sizes given by hand (model.family), through the model registry, with the
// family's random init from model.seed.
#pragma once

#include <memory>

#include "peng/config.pb.h"
#include "peng/models/registry.h"
#include "peng/parallel/pipeline/stage_split.h"
#include "peng/telemetry/flops.h"

namespace peng {

// The architecture of config.model(). Throws InputError naming the field when sizes are
// missing, conflicting or invalid.
DecoderConfig resolve_model_config(const proto::TrainConfig& config);

// The model of the resolved architecture with its initial weights (model.init_from's
// weights, or the random init from model.seed). Over a tensor-parallel group each rank
// builds its shards, under pipeline parallelism its stages, under expert parallelism its
// experts.
std::unique_ptr<CausalLM> initial_model(const proto::TrainConfig& config,
                                        const DecoderConfig& model, Backend& backend,
                                        const TpGroup& tp = {}, const PipelineLayout& pipe = {},
                                        const ExpertGroup& experts = {});

// The parameters one token's forward multiplies with (the FLOPs convention's N): those that
// take part in matmuls (Parameter::flops; a tied one once, buffers never) and, of each MoE
// layer's routed experts, the k a token is routed to (attention, router, shared experts,
// dense layers and head in full). The whole model's count for a dense one.
int64_t active_parameters(const DecoderConfig& model);

// The activation recomputation training.recompute* asks for (InputError naming the field for
// an unknown mode or module, or a negative layer count).
RecomputePolicy recompute_policy(const proto::TrainingConfig& training);

// The FLOPs convention's shape of a model (telemetry/flops.h): N = active_parameters(), the
// attention width n_head * head_dim, T = seq_len; with a recompute policy over the pipeline
// stages of `split` (empty: one stage), the forward FLOPs it repeats per token (hardware
// FLOPs only): a fully recomputed layer's 2 N_layer + 4 H hd T f, core_attn's 4 H hd T f (f:
// the attention work fraction); mlp_act and norm repeat no matmul.
FlopsShape flops_shape(const DecoderConfig& model, int64_t seq_len, double attention_fraction = 1,
                       const RecomputePolicy& recompute = {}, const StageSplit& split = {});

// The pipeline cost model of --pp-balance auto: forward matmul FLOPs per token of each layer
// (2 N_layer + 4 H hd T, a MoE layer's routed experts at top-k of them), the LM head's
// 2 C V_padded on the last stage, nothing on the first (the embedding is a lookup).
// Backward costs about twice forward everywhere, so forward alone ranks the stages.
LayerCosts layer_costs(const DecoderConfig& model, int64_t seq_len);

}  // namespace peng
