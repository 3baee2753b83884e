#include "peng/models/decoder/config.h"

#include <cstdio>

#include "peng/core/error.h"

namespace peng {

void DecoderConfig::validate() const {
  PENG_INPUT_CHECK(n_layer > 0, "model.n_layer must be > 0, got ", n_layer);
  PENG_INPUT_CHECK(n_head > 0, "model.n_head must be > 0, got ", n_head);
  PENG_INPUT_CHECK(n_embd > 0, "model.n_embd must be > 0, got ", n_embd);
  PENG_INPUT_CHECK(n_kv_head > 0 && n_head % n_kv_head == 0, "model.n_head (", n_head,
                   ") is not a multiple of model.n_kv_head (", n_kv_head, ")");
  PENG_INPUT_CHECK(head_dim > 0, "model.head_dim must be > 0, got ", head_dim);
  PENG_INPUT_CHECK(rope.theta == 0 || head_dim % 2 == 0, "model.head_dim (", head_dim,
                   ") must be even for rotary position embeddings");
  PENG_INPUT_CHECK(ffn_hidden > 0, "model.ffn_hidden must be > 0, got ", ffn_hidden);
  PENG_INPUT_CHECK(vocab_size > 0, "model.vocab_size must be > 0, got ", vocab_size);
  PENG_INPUT_CHECK(max_seq_len > 0, "model.max_seq_len must be > 0, got ", max_seq_len);
  PENG_INPUT_CHECK(norm_eps > 0, "model.norm_eps must be > 0, got ", norm_eps);
  PENG_INPUT_CHECK(rope.theta >= 0, "model.rope_theta must be >= 0, got ", rope.theta);
  PENG_INPUT_CHECK(rope.scaling.empty() || rope.scaling == "llama3", "model.rope_scaling type \"",
                   rope.scaling, "\" is not implemented");
  if (moe.enabled()) validate_moe();
}

void DecoderConfig::validate_moe() const {
  PENG_INPUT_CHECK(mlp == MlpKind::kSwiGlu, "model.experts: MoE experts are SwiGLU MLPs");
  PENG_INPUT_CHECK(moe.topk >= 1 && moe.topk <= moe.experts, "model.experts_per_token (", moe.topk,
                   ") must be in [1, model.experts = ", moe.experts, "]");
  PENG_INPUT_CHECK(moe.expert_hidden > 0, "model.expert_ffn must be > 0, got ", moe.expert_hidden);
  PENG_INPUT_CHECK(moe.shared >= 0, "model.shared_experts must be >= 0, got ", moe.shared);
  PENG_INPUT_CHECK(moe.first_dense >= 0 && moe.first_dense < n_layer, "model.first_dense_layers (",
                   moe.first_dense, ") must be in [0, model.n_layer = ", n_layer, ")");
  PENG_INPUT_CHECK(moe.aux_alpha >= 0, "model.aux_loss_alpha must be >= 0, got ", moe.aux_alpha);
  PENG_INPUT_CHECK(moe.bias_update_speed >= 0, "model.bias_update_speed must be >= 0, got ",
                   moe.bias_update_speed);
}

void DecoderConfig::check_expert_parallel(int ep) const {
  PENG_INPUT_CHECK(ep == 1 || moe.enabled(), "parallel.ep (", ep,
                   ") needs a Mixture-of-Experts model; this ", family, " model has no experts");
  PENG_INPUT_CHECK(moe.experts % ep == 0, "model.experts (", moe.experts,
                   ") is not divisible by parallel.ep (", ep, ")");
}

void DecoderConfig::check_tensor_parallel(int tp) const {
  PENG_INPUT_CHECK(n_head % tp == 0, "model.n_head (", n_head,
                   ") is not divisible by parallel.tp (", tp, ")");
  PENG_INPUT_CHECK(n_kv_head % tp == 0 || tp % n_kv_head == 0, "model.n_kv_head (", n_kv_head,
                   ") and parallel.tp (", tp,
                   ") do not fit: tp must divide the key/value heads, or be a multiple of them "
                   "(each kv head then replicated on tp / n_kv_head ranks)");
}

std::vector<std::pair<std::string, std::string>> describe(const DecoderConfig& c) {
  const auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  const auto flag = [](bool b) { return std::string(b ? "true" : "false"); };
  std::vector<std::pair<std::string, std::string>> out = {
      {"n_layer", std::to_string(c.n_layer)},
      {"n_head", std::to_string(c.n_head)},
      {"n_embd", std::to_string(c.n_embd)},
      {"vocab_size", std::to_string(c.vocab_size)},
      {"max_seq_len", std::to_string(c.max_seq_len)},
      {"family", c.family},
      {"n_kv_head", std::to_string(c.n_kv_head)},
      {"head_dim", std::to_string(c.head_dim)},
      {"ffn_hidden", std::to_string(c.ffn_hidden)},
      {"norm", c.norm == NormKind::kRmsNorm ? "rmsnorm" : "layernorm"},
      {"norm_eps", num(c.norm_eps)},
      {"mlp", c.mlp == MlpKind::kSwiGlu ? "swiglu" : "gelu"},
      {"position_embedding", flag(c.position_embedding)},
      {"rope_theta", num(c.rope.theta)},
      {"qkv_bias", flag(c.qkv_bias)},
      {"attn_out_bias", flag(c.attn_out_bias)},
      {"mlp_bias", flag(c.mlp_bias)},
      {"qk_norm", flag(c.qk_norm)},
      {"tied_embeddings", flag(c.tied_embeddings)}};
  if (!c.ffn_layer.empty()) out.push_back({"ffn_layer", c.ffn_layer});
  if (c.moe.enabled()) {
    out.insert(out.end(), {{"experts", std::to_string(c.moe.experts)},
                           {"experts_per_token", std::to_string(c.moe.topk)},
                           {"expert_ffn", std::to_string(c.moe.expert_hidden)},
                           {"shared_experts", std::to_string(c.moe.shared)},
                           {"first_dense_layers", std::to_string(c.moe.first_dense)},
                           {"scoring", c.moe.sigmoid ? "sigmoid" : "softmax"},
                           {"norm_topk", flag(c.moe.norm_topk)},
                           {"aux_loss_alpha", num(c.moe.aux_alpha)},
                           {"bias_update_speed", num(c.moe.bias_update_speed)}});
  }
  if (!c.rope.scaling.empty()) {
    out.insert(out.end(),
               {{"rope_scaling", c.rope.scaling},
                {"rope_factor", num(c.rope.factor)},
                {"rope_low_freq_factor", num(c.rope.low_freq_factor)},
                {"rope_high_freq_factor", num(c.rope.high_freq_factor)},
                {"rope_original_max_position", std::to_string(c.rope.original_max_position)}});
  }
  return out;
}

}  // namespace peng
