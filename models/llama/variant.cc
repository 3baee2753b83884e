// The three variants' structure, sizes and presets.
#include "peng/models/llama/variant.h"

#include <map>

#include "peng/core/error.h"

namespace peng::llama {

const char* family_name(Variant v) {
  return v == Variant::kQwen2 ? "qwen2" : v == Variant::kQwen3 ? "qwen3" : "llama";
}

const char* architecture(Variant v) {
  return v == Variant::kQwen2   ? "Qwen2ForCausalLM"
         : v == Variant::kQwen3 ? "Qwen3ForCausalLM"
                                : "LlamaForCausalLM";
}

Variant variant_of(const DecoderConfig& c) {
  return c.family == "qwen2"   ? Variant::kQwen2
         : c.family == "qwen3" ? Variant::kQwen3
                               : Variant::kLlama;
}

DecoderConfig base_config(Variant v) {
  DecoderConfig c;
  c.family = family_name(v);
  c.norm = NormKind::kRmsNorm;
  c.norm_eps = 1e-6f;
  c.rope.theta = 10000.0;
  c.mlp = MlpKind::kSwiGlu;
  c.weight_layout = WeightLayout::kOutIn;
  c.qkv_bias = v == Variant::kQwen2;
  c.qk_norm = v == Variant::kQwen3;
  c.names = {.token_embedding = "embed_tokens",
             .layer = "layers",
             .attn_norm = "input_layernorm",
             .attention = "self_attn",
             .qkv = "qkv_proj",
             .q_norm = "q_norm",
             .k_norm = "k_norm",
             .attn_out = "o_proj",
             .mlp_norm = "post_attention_layernorm",
             .mlp = "mlp",
             .mlp_in = "gate_up_proj",
             .mlp_out = "down_proj",
             .final_norm = "norm",
             .lm_head = "lm_head"};
  return c;
}

void complete_config(Variant v, DecoderConfig& c) {
  if (c.n_kv_head == 0) c.n_kv_head = c.n_head;
  if (c.head_dim == 0 && v == Variant::kQwen3) c.head_dim = 128;  // Qwen3Config's default
  if (c.head_dim == 0 && c.n_head > 0) {
    PENG_INPUT_CHECK(c.n_embd % c.n_head == 0, "model.n_embd (", c.n_embd,
                     ") is not divisible by model.n_head (", c.n_head, "); set model.head_dim");
    c.head_dim = c.n_embd / c.n_head;
  }
  if (c.max_seq_len == 0) c.max_seq_len = 2048;
  PENG_INPUT_CHECK(!c.position_embedding, "model.position_embedding: ", family_name(v),
                   " has rotary positions");
  PENG_INPUT_CHECK(c.rope.theta > 0, "model.rope_theta must be > 0 for ", family_name(v), ", got ",
                   c.rope.theta);
  PENG_INPUT_CHECK(c.qk_norm == (v == Variant::kQwen3), "model.qk_norm is ",
                   c.qk_norm ? "set" : "unset", ": only qwen3 has per-head q/k norms");
  c.validate();
}

namespace {
// n_layer, n_embd, n_head, n_kv_head, head_dim, ffn, vocab, max positions, theta, eps, tied.
struct Shape {
  Variant variant;
  int n_layer;
  int64_t n_embd;
  int n_head, n_kv_head;
  int64_t head_dim, ffn, vocab;
  int max_pos;
  double theta;
  float eps;
  bool tied;
  double llama3_factor;  // 0: no rope scaling
};

// The published configs (config.json of each model on the Hugging Face hub).
const std::map<std::string, Shape>& presets() {
  static const std::map<std::string, Shape> p = {
      {"llama3.2-1b",
       {Variant::kLlama, 16, 2048, 32, 8, 64, 8192, 128256, 131072, 500000, 1e-5f, true, 32}},
      {"llama3.1-8b",
       {Variant::kLlama, 32, 4096, 32, 8, 128, 14336, 128256, 131072, 500000, 1e-5f, false, 8}},
      {"llama3.1-70b",
       {Variant::kLlama, 80, 8192, 64, 8, 128, 28672, 128256, 131072, 500000, 1e-5f, false, 8}},
      {"qwen2.5-0.5b",
       {Variant::kQwen2, 24, 896, 14, 2, 64, 4864, 151936, 32768, 1e6, 1e-6f, true, 0}},
      {"qwen2.5-7b",
       {Variant::kQwen2, 28, 3584, 28, 4, 128, 18944, 152064, 131072, 1e6, 1e-6f, false, 0}},
      {"qwen3-0.6b",
       {Variant::kQwen3, 28, 1024, 16, 8, 128, 3072, 151936, 40960, 1e6, 1e-6f, true, 0}},
      {"qwen3-8b",
       {Variant::kQwen3, 36, 4096, 32, 8, 128, 12288, 151936, 40960, 1e6, 1e-6f, false, 0}},
  };
  return p;
}
}  // namespace

const std::vector<std::string>& preset_names(Variant v) {
  static const std::map<Variant, std::vector<std::string>> names = [] {
    std::map<Variant, std::vector<std::string>> out;
    for (const auto& [name, s] : presets()) out[s.variant].push_back(name);
    return out;
  }();
  static const std::vector<std::string> none;
  auto it = names.find(v);
  return it == names.end() ? none : it->second;
}

DecoderConfig preset(const std::string& name) {
  const Shape& s = presets().at(name);
  DecoderConfig c = base_config(s.variant);
  c.n_layer = s.n_layer;
  c.n_embd = s.n_embd;
  c.n_head = s.n_head;
  c.n_kv_head = s.n_kv_head;
  c.head_dim = s.head_dim;
  c.ffn_hidden = s.ffn;
  c.vocab_size = s.vocab;
  c.max_seq_len = s.max_pos;
  c.rope.theta = s.theta;
  c.norm_eps = s.eps;
  c.tied_embeddings = s.tied;
  if (s.llama3_factor > 0) {
    c.rope.scaling = "llama3";
    c.rope.factor = s.llama3_factor;
    c.rope.low_freq_factor = 1;
    c.rope.high_freq_factor = 4;
    c.rope.original_max_position = 8192;
  }
  complete_config(s.variant, c);
  return c;
}

}  // namespace peng::llama
