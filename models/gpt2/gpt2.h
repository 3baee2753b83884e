// The GPT-2 language model: token + position embedding, n_layer pre-LN blocks, final
// LayerNorm, LM head tied to the token embedding.
//
// Parameters are registered with Hugging Face GPT-2 names (without the `transformer.`
// prefix). The token embedding `wte.weight` is stored padded to (padded_vocab, C); the
// padded rows start at zero and stay zero: padded logits are excluded from the softmax,
// so they receive no gradient.
//
// Under sequence parallelism (TpGroup::sequence_parallel, when B*T divides by tp) the
// residual stream, LayerNorms and residual adds hold this rank's B*T / tp rows; the
// LayerNorm parameters are then marked tp_partial_grad (their gradients sum over tp).
//
// Usage per micro-batch: forward(tokens, targets) -> mean loss; backward(scale) adds
// scale * d(sum of per-position losses)/d(params) into the parameter gradients.
// backward() announces finished gradients as it goes (ParameterSet::grads_ready_from):
// after ln_f, after each block from the last to the first, and 0 after the embeddings.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/parameter.h"
#include "models/gpt2/block.h"
#include "models/gpt2/config.h"
#include "parallel/tensor_parallel/tp_group.h"

namespace peng {

// Where a model's layers live under pipeline parallelism (parallel/pipeline/schedule.h):
// n_layer / (pp * v) blocks per stage; this pipeline rank holds chunks c = 0..v-1, global
// stages c * pp + rank. Stage 0 starts with the embeddings, the last stage ends with ln_f,
// the (tied) LM head and the loss; wte lives on both, its gradients summed between them.
struct PipelineLayout {
  int pp = 1, rank = 0, virtual_stages = 1;
  int stages() const { return pp * virtual_stages; }
  bool first_rank() const { return rank == 0; }      // holds stage 0
  bool last_rank() const { return rank == pp - 1; }  // holds the last stage
};

// Parameters of the whole model (real vocabulary, every stage and shard); FLOPs accounting
// counts all but the position embedding.
int64_t gpt2_num_params(const Gpt2Config& config, bool include_position_embedding = true);

class Gpt2Model {
 public:
  // Over a tensor-parallel group `tp` every rank holds its shard of each weight (see
  // models/nn/linear.h): heads and MLP columns split, wte split by vocabulary rows
  // (padded_vocab(tp) / tp per rank, vocabulary-parallel embedding and cross-entropy: no
  // rank holds the full logits). Every method but config() is then collective over tp.
  // Under pipeline parallelism it holds only its stages' parameters.
  Gpt2Model(const Gpt2Config& config, Backend& backend, const TpGroup& tp = {},
            const PipelineLayout& pipe = {});

  const Gpt2Config& config() const { return config_; }
  ParameterSet& parameters() { return params_; }
  Backend& backend() { return backend_; }

  // GPT-2 initialisation from `seed`: weights N(0, 0.02), residual projections
  // (attn.c_proj, mlp.c_proj) N(0, 0.02 / sqrt(2 n_layer)), biases 0, LayerNorm 1/0.
  void init_random(uint64_t seed);
  // Loads tensors in Hugging Face layout (wte has the real vocab rows); see hf_checkpoint.h.
  void load_state(const std::map<std::string, Tensor>& tensors);
  // The parameters in Hugging Face layout (wte cut to the real vocabulary), f32 CPU copies.
  std::map<std::string, Tensor> state() const;

  // tokens, targets (B, T) i32 with T <= max_seq_len. Returns the mean cross-entropy over
  // the B*T positions. Keeps activations for backward. Without targets (undefined tensor)
  // only the logits are computed and the return value is 0. Without pipeline parallelism.
  double forward(const Tensor& tokens, const Tensor& targets);
  // Gradient of scale * sum(per-position losses) of the last forward, ADDED into the
  // parameter gradients. Overwrites the logits.
  void backward(float scale);

  // Pipeline parallelism: chunk c's part of forward. The first stage reads `tokens`, the
  // others `x` (R, C), the previous stage's output (R = B*T, or B*T / tp under sequence
  // parallelism). The last stage computes the mean loss over B*T positions into *loss
  // (targets needed) and returns an undefined tensor; the others return their output
  // (R, C), valid until this chunk's next forward. Keeps the activations of this one
  // micro-batch per chunk for backward.
  const Tensor& forward_chunk(int chunk, const Tensor& tokens, const Tensor& x,
                              const Tensor& targets, double* loss);
  // Backward of chunk c's last forward: the last stage starts from scale * sum of losses,
  // the others from `dout` (R, C). Returns dL/dx (R, C), valid until the next backward;
  // undefined on the first stage.
  const Tensor& backward_chunk(int chunk, const Tensor& dout, float scale);
  const PipelineLayout& pipeline() const { return pipe_; }
  // Chunk c's activations of its last forward, moved out (the chunk's next forward
  // allocates fresh buffers) and moved back before that forward's backward: pipelines keep
  // one set per micro-batch in flight without recomputing.
  std::vector<Tensor> stash_activations(int chunk);
  void restore_activations(int chunk, std::vector<Tensor>&& saved);
  // Logits (B*T, padded_vocab / tp) of the last forward: this rank's vocabulary columns
  // [vocab_begin(), ...); only the real vocabulary is meaningful.
  const Tensor& logits() const { return logits_; }
  int64_t vocab_begin() const { return vocab_begin_; }
  int64_t padded_vocab() const { return vp_; }  // over all tp shards
  // Rows of a stage boundary's tensor for `positions` = B*T positions (B*T / tp under
  // sequence parallelism, when that divides).
  int64_t boundary_rows(int64_t positions) const {
    const bool sp = tp_.sequence_parallel && tp_.size() > 1 && positions % tp_.size() == 0;
    return sp ? positions / tp_.size() : positions;
  }
  // Row `row` of the last forward's logits over the whole padded vocabulary, on the host
  // (gathered over tp).
  Tensor logits_row(int64_t row);

 private:
  Gpt2Config config_;
  Backend& backend_;
  TpGroup tp_;
  PipelineLayout pipe_;
  int layers_per_stage_;
  int64_t vp_;           // padded vocabulary (all shards)
  int64_t vocab_begin_;  // this rank's first vocabulary row / logit column
  int64_t vocab_valid_;  // how many of its Vp / tp rows are real tokens
  ParameterSet params_;
  int wte_ = -1, wpe_ = -1;  // -1 where this pipeline rank does not hold them
  bool has_embedding(int chunk) const { return pipe_.first_rank() && chunk == 0; }
  bool has_head(int chunk) const { return pipe_.last_rank() && chunk == pipe_.virtual_stages - 1; }
  std::vector<std::unique_ptr<Block>> blocks_;  // chunk c: [c * layers_per_stage_, ...)
  std::vector<Tensor*> activation_slots(int chunk);
  std::unique_ptr<LayerNorm> ln_f_;
  std::vector<int64_t> block_offsets_;  // flat offset of each block's first parameter
  int64_t lnf_offset_ = 0;
  int64_t batch_ = 0, seq_ = 0;
  Tensor tokens_, targets_, x0_, dres_, dlnf_, logits_, losses_;
  Tensor none_;
  Tensor row_max_, ce_stats_;  // vocabulary-parallel cross-entropy (N), (N, 2)
  // Sequence parallelism (sp_ for the last forward): all rows of the embedding output,
  // of ln_f's output, of dL/dx0; this rank's rows of dL/dlnf.
  bool sp_ = false;
  Tensor emb_full_, lnf_full_, dres_full_, dlnf_rows_;
  const Tensor* lnf_out_ = nullptr;
};

}  // namespace peng
