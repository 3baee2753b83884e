// DecoderConfig: the architecture of a decoder-only transformer, as data.
//
// One config describes every family peng trains (GPT-2, Llama, Qwen2, Qwen3): sizes, and the
// choices that tell them apart (Megatron's TransformerConfig plus its layer spec):
//   GPT-2:  LayerNorm (with bias), learned positions, MHA with qkv/out biases, GELU MLP with
//           biases, tied LM head, Conv1D (in, out) weights.
//   Llama:  RMSNorm, RoPE (theta, optional "llama3" frequency scaling), grouped-query
//           attention, SwiGLU MLP, no biases, untied or tied head, (out, in) weights.
//   Qwen2:  Llama + q/k/v biases.   Qwen3: Llama + per-head q/k RMSNorm, head_dim apart.
// A model family (models/<family>/) fills it from a Hugging Face config.json, a preset or
// sizes given by hand, and names the parameters (DecoderNames).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "peng/core/backend.h"

namespace peng {

enum class NormKind { kLayerNorm, kRmsNorm };
enum class MlpKind { kGelu, kSwiGlu };  // GELU: fc -> gelu -> proj; SwiGLU: silu(gate) * up

// RoPE's frequencies: inv_freq[i] = theta^(-2i / head_dim), then, for type "llama3", Llama
// 3.1's rule: wavelengths above original_max_position / low_freq_factor are divided by
// `factor`, those below original_max_position / high_freq_factor kept, the band between
// interpolated (Hugging Face's _compute_llama3_parameters).
struct RopeConfig {
  double theta = 0;     // 0: no rotary embedding
  std::string scaling;  // "" or "llama3"
  double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  int64_t original_max_position = 0;
};

// Mixture of Experts (DeepSeek-MoE, models/nn/moe.h): layers from `first_dense` on replace
// the MLP with `experts` routed SwiGLU experts of width `expert_hidden`, `topk` of them per
// token, plus `shared` experts merged into one SwiGLU of width shared * expert_hidden that
// sees every token. experts = 0: a dense model.
struct MoeConfig {
  int experts = 0;
  int topk = 0;
  int64_t expert_hidden = 0;
  int shared = 0;
  int first_dense = 0;
  bool sigmoid = false;          // scores = sigmoid(logits) (DeepSeek-V3), else softmax
  bool norm_topk = false;        // the chosen scores divided by their sum
  double aux_alpha = 0;          // the load-balancing auxiliary loss's weight
  double bias_update_speed = 0;  // DeepSeek-V3's auxiliary-loss-free balancing (0: off)

  bool enabled() const { return experts > 0; }
  bool is_moe_layer(int layer) const { return enabled() && layer >= first_dense; }
};

// What a family calls its parameters: "<token_embedding>.weight", "<layer>.<i>.<attention>.
// <qkv>.weight", ... Empty slots (position_embedding, q_norm, ...) are unused.
struct DecoderNames {
  std::string token_embedding = {}, position_embedding = {}, layer = {}, attn_norm = {},
              attention = {}, qkv = {}, q_norm = {}, k_norm = {}, attn_out = {}, mlp_norm = {},
              mlp = {}, mlp_in = {}, mlp_out = {}, final_norm = {}, lm_head = {};
  // MoE layers: "<mlp>.<router>.weight", "<mlp>.<router>.<router_bias>",
  // "<mlp>.<experts>.<e>.<mlp_in>.weight", "<mlp>.<shared_experts>.<mlp_in>.weight", ...
  std::string router = {}, router_bias = {}, experts = {}, shared_experts = {};
};

struct DecoderConfig {
  std::string family;  // the registered model family (models/registry.h)
  int n_layer = 0;
  int n_head = 0;
  int n_kv_head = 0;       // key/value heads (= n_head: multi-head attention)
  int64_t n_embd = 0;      // hidden size C
  int64_t head_dim = 0;    // per head (usually n_embd / n_head)
  int64_t ffn_hidden = 0;  // MLP hidden width
  int64_t vocab_size = 0;  // real vocabulary; padded internally
  int max_seq_len = 0;     // longest sequence (learned position rows)

  NormKind norm = NormKind::kLayerNorm;
  float norm_eps = 1e-5f;
  bool position_embedding = false;  // learned absolute positions
  RopeConfig rope;
  bool qkv_bias = false, attn_out_bias = false, mlp_bias = false;
  bool qk_norm = false;  // per-head RMSNorm of q and k before RoPE
  MlpKind mlp = MlpKind::kGelu;
  // A registered feed-forward layer (models/nn/feed_forward.h) in place of the built-in MLP
  // of kind `mlp` in every dense layer; "" = the built-in one.
  std::string ffn_layer;
  MoeConfig moe;
  bool tied_embeddings = false;  // the LM head is the token embedding
  WeightLayout weight_layout = WeightLayout::kInOut;
  double init_std = 0.02;  // N(0, std) weights; residual projections / sqrt(2 n_layer)
  DecoderNames names;

  // The vocabulary padded to a multiple of 128 x tp, so it splits evenly over tp ranks in
  // 128-aligned shards (Megatron's make-vocab-size-divisible-by x tp). Padded rows stay 0.
  int64_t padded_vocab(int tp = 1) const {
    const int64_t m = 128 * int64_t(tp);
    return (vocab_size + m - 1) / m * m;
  }
  int64_t q_width() const { return int64_t(n_head) * head_dim; }      // H * hd
  int64_t kv_width() const { return int64_t(n_kv_head) * head_dim; }  // K * hd
  // Throws InputError naming the field (model.<field>) when the numbers make no model.
  void validate() const;
  // Throws InputError naming the fields and numbers when the model cannot split over `tp`
  // tensor-parallel ranks: heads divide by tp, and tp divides the kv heads or is a
  // multiple of them (each kv head then replicated on tp / n_kv_head ranks).
  void check_tensor_parallel(int tp) const;
  // Throws InputError unless the experts split over `ep` expert-parallel ranks.
  void check_expert_parallel(int ep) const;

 private:
  void validate_moe() const;
};

// The sizes and switches of a config as (field, value) pairs, in a fixed order, for
// messages and comparisons ("n_layer", "2"). Includes the family.
std::vector<std::pair<std::string, std::string>> describe(const DecoderConfig& c);

}  // namespace peng
