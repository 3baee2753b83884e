// The bytes of activations one rank keeps for backward, predicted from the model's sizes, the
// micro-batch, the tensor-parallel split and the recomputation policy before anything runs
// (the arithmetic a layout planner needs), term by term as peng's layers keep them (f32):
//   per layer, with N = B*T positions, R = N / tp rows under sequence parallelism (else N),
//   Hl, Kl, G = Hl + 2 Kl local heads of hd, Fl the local MLP width:
//     norms: 2 outputs R*C, statistics R each (LayerNorm: mean too)
//     attention: qkv N*G*hd (qk-norm: again, and N*(Hl+Kl) statistics), probabilities
//       B*Hl*T*T, output N*Hl*hd, projection out N*C (SP: R*C + its partial sums N*C,
//       and the gathered input rows N*C of the qkv projection)
//     MLP: pre-activation N*Fl (SwiGLU 2*Fl), activation N*Fl, out like attention's
//     MoE (estimated, ep 1): router logits and scores N*E, choices, k*N routed rows
//       in and out (C each) and their expert SwiGLUs, the shared SwiGLU
//     residual: x2 and x3, R*C each
//   recomputation drops: full, all but x3; core_attn, the probabilities; mlp_act, the
//   activation; norm, the norm outputs (and the gathered rows reading them under SP).
//   first stage: the embedding output R*C (SP: N*C before the scatter); last stage: the
//   final norm R*C (SP: gathered N*C), the logits N*Vp/tp and loss statistics.
// And the bytes of the training state (f32 values, gradients, AdamW's two moments) one rank
// keeps under each ZeRO stage, from its parameter count n (its tp shard of its stage) and
// s = ceil(n / dp) (its dp shard; each bucket pads to a multiple of dp, < dp elements more):
//   ZeRO 0: values 4n, gradients 4n, moments 8n
//   ZeRO 1: values 4n, gradients 4n + 4s (the flat buffer and the reduced shard), moments 8s
//   ZeRO 2: values 4n, gradients 4s, moments 8s; plus, while backward runs, the layers'
//           gradients not reduced yet (all of a stage's under pp, reduced after the schedule)
//   ZeRO 3: values 4s, gradients 4s, moments 8s; plus, while a pass runs, the layers it has
//           gathered and ZeRO 2's unreduced gradients (ParamShards::peak_gathered_bytes()
//           measures both; not predicted here)
// tests/launch/memory_plan_test.cc checks the predictions against what a model keeps and
// what the trainer allocates.
#pragma once

#include <cstdint>

#include "peng/models/decoder/config.h"
#include "peng/models/nn/recompute.h"
#include "peng/parallel/pipeline/schedule.h"

namespace peng {

struct ActivationShape {
  int64_t batch = 1, seq = 1;  // one micro-batch
  int tp = 1;
  bool sequence_parallel = false;
};

// One transformer layer `layer` of the model, one micro-batch.
int64_t layer_activation_bytes(const DecoderConfig& c, int layer, const ActivationShape& s,
                               const RecomputePolicy& p);
// The embedding's (first stage) or the head's (last stage) kept tensors, one micro-batch.
int64_t embedding_activation_bytes(const DecoderConfig& c, const ActivationShape& s);
int64_t head_activation_bytes(const DecoderConfig& c, const ActivationShape& s);
// A pipeline chunk of layers [first, first + count), one micro-batch.
int64_t chunk_activation_bytes(const DecoderConfig& c, int first, int count,
                               const ActivationShape& s, const RecomputePolicy& p, bool embedding,
                               bool head);
// The most micro-batch chunks a pipeline rank holds at once under `schedule` (forwards
// whose backward has not run yet); 1 without a schedule.
int in_flight_chunks(const Schedule& schedule, int rank);

struct StateBytes {
  int64_t values = 0, grads = 0, optimizer = 0;
  int64_t total() const { return values + grads + optimizer; }
};
// `numel`: this rank's parameters (ParameterSet::numel()).
StateBytes state_bytes(int64_t numel, int dp, int zero);

}  // namespace peng
