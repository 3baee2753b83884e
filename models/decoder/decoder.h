// DecoderModel: a decoder-only transformer built from a DecoderConfig, for one rank.
//
//   x = token_embedding[tokens] (+ position_embedding[t])
//   x = Block(x) for each layer                      (models/decoder/block.h)
//   logits = final_norm(x) W_head^T                  (W_head: the token embedding when tied)
//   loss = mean cross-entropy over the B*T positions
//
// Tensor parallelism (TpGroup): the blocks split heads and MLP features (models/nn/); the
// token embedding and the LM head are split by vocabulary rows (padded_vocab(tp) / tp per
// rank), with the vocabulary-parallel embedding and cross-entropy of Megatron: no rank
// holds the full logits. Padded vocabulary rows start at zero and stay zero (padded logits
// are excluded from the softmax, so they receive no gradient). Under sequence parallelism
// (when B*T divides by tp) the residual stream, norms and residual adds hold this rank's
// B*T / tp rows.
//
// Pipeline parallelism (PipelineLayout, models/model.h): the rank holds its chunks' layers,
// the embeddings on the first rank, the final norm and head on the last. A tied head's
// token embedding lives on both: the first stage's copy is the primary (tie group
// "embedding"), the last stage's a copy whose gradients are summed with it.
#pragma once

#include <memory>
#include <vector>

#include "peng/models/decoder/block.h"
#include "peng/models/model.h"

namespace peng {

class DecoderModel : public CausalLM {
 public:
  // With `allocate` false nothing is allocated: the model is only its parameter table
  // (names, shapes, roles), for counting and checking; calling anything else is an error.
  DecoderModel(const DecoderConfig& config, Backend& backend, const TpGroup& tp = {},
               const PipelineLayout& pipe = {}, const ExpertGroup& experts = {},
               bool allocate = true);

  const DecoderConfig& arch() const override { return arch_; }
  ParameterSet& parameters() override { return params_; }
  Backend& backend() override { return backend_; }
  const PipelineLayout& pipeline() const override { return pipe_; }
  int tp_size() const override { return tp_.size(); }

  void init_random(uint64_t seed) override;
  void load_state(const std::map<std::string, Tensor>& tensors) override;
  std::map<std::string, Tensor> state() const override;

  const Tensor& forward_chunk(int chunk, const Tensor& tokens, const Tensor& x,
                              const Tensor& targets, const LossOut& loss) override;
  const Tensor& backward_chunk(int chunk, const Tensor& dout, float scale) override;
  std::vector<Tensor> stash_activations(int chunk) override;
  void restore_activations(int chunk, std::vector<Tensor>&& saved) override;
  int64_t boundary_rows(int64_t positions) const override;
  Tensor logits_row(int64_t row) override;

  void set_recompute(const RecomputePolicy& policy) override;
  int64_t kept_activation_bytes(std::set<const void*>& seen) override;
  using CausalLM::kept_activation_bytes;
  void begin_step() override;
  std::vector<RoutingStats> routing_stats() const override;
  void update_routing_biases() override;
  void set_balance_scope(BalanceScope scope) override;

  // Logits (B*T, padded_vocab / tp) of the last forward: this rank's vocabulary columns
  // [vocab_begin(), ...); only the real vocabulary is meaningful.
  const Tensor& logits() const { return logits_; }
  int64_t vocab_begin() const { return vocab_begin_; }

 private:
  bool has_embedding(int chunk) const { return pipe_.first_rank() && chunk == 0; }
  bool has_head(int chunk) const { return pipe_.last_rank() && chunk == pipe_.virtual_stages - 1; }
  void register_embeddings();
  void register_head();
  void embed(const Tensor& tokens, int64_t rows);
  void head_forward(const Tensor& x, const Tensor& targets, const LossOut& loss);
  void head_backward(float scale);
  void embedding_backward();
  std::vector<Tensor*> activation_slots(int chunk);
  Parameter& head_weight() { return params_.at(head_ >= 0 ? head_ : wte_); }
  // The layers (Parameter::layer) whose parameters the head reads: its own, and the
  // embedding's when the head is the tied embedding on the same stage.
  std::vector<int> head_layers();

  DecoderConfig arch_;
  Backend& backend_;
  TpGroup tp_;
  PipelineLayout pipe_;
  StageSplit split_;                 // layers of every global stage
  std::vector<size_t> chunk_begin_;  // chunk c's blocks: [chunk_begin_[c], chunk_begin_[c + 1])
  int64_t vp_;                       // padded vocabulary (all shards)
  int64_t vocab_begin_;              // this rank's first vocabulary row / logit column
  int64_t vocab_valid_;              // how many of its Vp / tp rows are real tokens
  ParameterSet params_;
  std::unique_ptr<RopeTables> rope_;
  // Parameter indices; -1 where this rank does not hold them.
  int wte_ = -1, wpe_ = -1, head_ = -1;
  std::vector<std::unique_ptr<Block>> blocks_;  // chunk by chunk (chunk_begin_)
  std::unique_ptr<Norm> final_norm_;
  std::vector<int64_t> block_offsets_;  // flat offset of each block's first parameter
  std::vector<int> block_layers_;       // each block's transformer layer
  int64_t head_offset_ = 0;             // flat offset of the final norm's first parameter
  int64_t batch_ = 0, seq_ = 0;
  Tensor tokens_, targets_, x0_, dres_, dnorm_, logits_, losses_;
  Tensor none_;
  Tensor row_max_, ce_stats_;  // vocabulary-parallel cross-entropy (N), (N, 2)
  // Sequence parallelism (sp_ for the last forward): all rows of the embedding output,
  // of the final norm's output, of dL/dx0; this rank's rows of dL/dnorm.
  bool sp_ = false;
  Tensor emb_full_, norm_full_, dres_full_, dnorm_rows_;
  const Tensor* norm_out_ = nullptr;
};

// A family's builder when its models are DecoderModels (ModelFamily::build).
std::unique_ptr<CausalLM> build_decoder(const DecoderConfig& config, Backend& backend,
                                        const TpGroup& tp, const PipelineLayout& pipe,
                                        const ExpertGroup& experts, bool allocate);

}  // namespace peng
