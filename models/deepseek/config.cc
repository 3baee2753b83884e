// The DeepSeek-MoE family's structure, config.json and presets.
#include <climits>
#include <map>

#include "peng/core/error.h"
#include "peng/models/deepseek/deepseek.h"
#include "peng/models/llama/variant.h"

namespace peng::deepseek {

DecoderConfig base_config() {
  DecoderConfig c = llama::base_config(llama::Variant::kLlama);  // names and structure
  c.family = "deepseek_moe";
  c.names.router = "gate";
  c.names.router_bias = "e_score_correction_bias";
  c.names.experts = "experts";
  c.names.shared_experts = "shared_experts";
  return c;
}

void complete_config(DecoderConfig& c) {
  if (c.n_kv_head == 0) c.n_kv_head = c.n_head;
  if (c.head_dim == 0 && c.n_head > 0) {
    PENG_INPUT_CHECK(c.n_embd % c.n_head == 0, "model.n_embd (", c.n_embd,
                     ") is not divisible by model.n_head (", c.n_head, "); set model.head_dim");
    c.head_dim = c.n_embd / c.n_head;
  }
  if (c.max_seq_len == 0) c.max_seq_len = 2048;
  PENG_INPUT_CHECK(c.moe.experts > 0, "model.experts must be > 0 for deepseek_moe, got ",
                   c.moe.experts);
  if (c.moe.topk == 0) c.moe.topk = std::min(2, c.moe.experts);
  if (c.moe.expert_hidden == 0 && c.ffn_hidden > 0) c.moe.expert_hidden = c.ffn_hidden;
  if (c.ffn_hidden == 0) c.ffn_hidden = c.moe.expert_hidden;  // only dense layers use it
  PENG_INPUT_CHECK(!c.position_embedding,
                   "model.position_embedding: deepseek_moe has rotary "
                   "positions");
  PENG_INPUT_CHECK(c.rope.theta > 0, "model.rope_theta must be > 0 for deepseek_moe, got ",
                   c.rope.theta);
  PENG_INPUT_CHECK(!c.qk_norm && !c.qkv_bias && !c.attn_out_bias && !c.mlp_bias,
                   "deepseek_moe has no q/k norms and no biases");
  c.validate();
}

namespace {

// Routing and attention features of DeepSeek's configs that peng does not implement.
void refuse_unsupported(const JsonFields& f) {
  if (auto act = f.string("hidden_act"); act && *act != "silu") {
    f.fail("hidden_act", "is \"" + *act + "\"; peng's SwiGLU experts are \"silu\"");
  }
  if (auto m = f.string("topk_method"); m && *m != "greedy" && *m != "noaux_tc") {
    f.fail("topk_method", "is \"" + *m +
                              "\"; only plain top-k routing (\"greedy\", or \"noaux_tc\" with "
                              "one group) is implemented");
  }
  for (const char* key : {"n_group", "topk_group"}) {
    if (f.integer(key, false, 0, INT_MAX).value_or(1) > 1) {
      f.fail(key, "is > 1; group-limited routing is not implemented");
    }
  }
  if (f.number("routed_scaling_factor", 0, 1e6).value_or(1) != 1) {
    f.fail("routed_scaling_factor", "is not 1; scaled routed outputs are not implemented");
  }
  if (f.integer("moe_layer_freq", false, 0, INT_MAX).value_or(1) != 1) {
    f.fail("moe_layer_freq", "is not 1; every layer from first_k_dense_replace on is MoE");
  }
  if (f.boolean("seq_aux").value_or(false)) {
    f.fail("seq_aux", "is true; the sequence-wise balance loss is not implemented");
  }
  if (const Json* r = f.find("kv_lora_rank"); r && !r->is_null()) {
    f.fail("kv_lora_rank", "is set; multi-head latent attention is not implemented");
  }
  if (const Json* s = f.find("rope_scaling"); s && !s->is_null()) {
    f.fail("rope_scaling", "is set; rope scaling is not implemented for deepseek_moe");
  }
  if (f.boolean("attention_bias").value_or(false)) {
    f.fail("attention_bias", "is true; deepseek_moe has no attention biases");
  }
  if (f.boolean("tie_word_embeddings").value_or(false)) {
    f.fail("tie_word_embeddings", "is true; deepseek_moe has an untied LM head");
  }
}

void parse_moe(const JsonFields& f, MoeConfig& moe) {
  moe.experts = int(*f.integer("n_routed_experts", true, 1, 1 << 20));
  moe.topk = int(*f.integer("num_experts_per_tok", true, 1, 1 << 20));
  moe.expert_hidden = *f.integer("moe_intermediate_size", true, 1, INT32_MAX);
  moe.shared = int(f.integer("n_shared_experts", false, 0, 1 << 20).value_or(0));
  moe.first_dense = int(f.integer("first_k_dense_replace", false, 0, INT_MAX).value_or(0));
  const std::string scoring = f.string("scoring_func").value_or("softmax");
  if (scoring != "softmax" && scoring != "sigmoid") {
    f.fail("scoring_func", "is \"" + scoring + "\"; softmax or sigmoid");
  }
  moe.sigmoid = scoring == "sigmoid";
  moe.norm_topk = f.boolean("norm_topk_prob").value_or(false);
  moe.aux_alpha = f.number("aux_loss_alpha", 0, 1e6).value_or(0.001);
  moe.bias_update_speed = f.number("bias_update_speed", 0, 1e6).value_or(0);
  if (moe.topk > moe.experts) {
    f.fail("num_experts_per_tok", "(" + std::to_string(moe.topk) + ") is more than " +
                                      "n_routed_experts (" + std::to_string(moe.experts) + ")");
  }
}

}  // namespace

DecoderConfig parse_hf_config(const JsonFields& f) {
  DecoderConfig c = base_config();
  c.n_embd = *f.integer("hidden_size", true, 1, INT32_MAX);
  c.ffn_hidden = *f.integer("intermediate_size", true, 1, INT32_MAX);
  c.n_layer = int(*f.integer("num_hidden_layers", true, 1, INT_MAX));
  c.n_head = int(*f.integer("num_attention_heads", true, 1, INT_MAX));
  c.n_kv_head = int(f.integer("num_key_value_heads", false, 1, INT_MAX).value_or(c.n_head));
  c.vocab_size = *f.integer("vocab_size", true, 1, INT32_MAX);
  c.max_seq_len = int(f.integer("max_position_embeddings", false, 1, INT_MAX).value_or(2048));
  c.head_dim = f.integer("head_dim", false, 1, INT32_MAX).value_or(0);
  c.norm_eps = float(f.number("rms_norm_eps", 1e-30, 1).value_or(1e-6));
  c.rope.theta = f.number("rope_theta", 1, 1e30).value_or(10000.0);
  refuse_unsupported(f);
  parse_moe(f, c.moe);
  try {
    complete_config(c);
  } catch (const InputError& e) {
    throw InputError(f.file() + ": " + e.what());
  }
  return c;
}

Json hf_config_json(const DecoderConfig& c, DType dtype) {
  Json j = Json::object();
  j["model_type"] = "deepseek_moe";
  j["architectures"] = Json::array({"DeepseekForCausalLM"});
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.n_embd;
  j["intermediate_size"] = c.ffn_hidden;
  j["num_hidden_layers"] = c.n_layer;
  j["num_attention_heads"] = c.n_head;
  j["num_key_value_heads"] = c.n_kv_head;
  j["max_position_embeddings"] = c.max_seq_len;
  j["rms_norm_eps"] = shortest_decimal(c.norm_eps);
  j["rope_theta"] = c.rope.theta;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = false;
  j["attention_bias"] = false;
  j["n_routed_experts"] = c.moe.experts;
  j["num_experts_per_tok"] = c.moe.topk;
  j["moe_intermediate_size"] = c.moe.expert_hidden;
  j["n_shared_experts"] = c.moe.shared;
  j["first_k_dense_replace"] = c.moe.first_dense;
  j["scoring_func"] = c.moe.sigmoid ? "sigmoid" : "softmax";
  j["norm_topk_prob"] = c.moe.norm_topk;
  j["aux_loss_alpha"] = c.moe.aux_alpha;
  j["bias_update_speed"] = c.moe.bias_update_speed;
  j["torch_dtype"] = torch_dtype_name(dtype);
  if (c.head_dim * c.n_head != c.n_embd) j["head_dim"] = c.head_dim;
  return j;
}

namespace {
struct Shape {
  int n_layer;
  int64_t n_embd;
  int n_head, n_kv_head;
  int64_t head_dim, ffn, vocab;
  int max_pos;
  double theta;
  float eps;
  MoeConfig moe;
};

// Real shapes: DeepSeek-MoE 16B's config.json; Qwen3-30B-A3B's MoE blocks and attention
// widths (without its q/k norms); DeepSeek-V3's MoE blocks (256 experts of 2048, 1 shared,
// sigmoid scores, aux-loss-free bias) with standard grouped attention in place of MLA.
const std::map<std::string, Shape>& presets() {
  static const std::map<std::string, Shape> p = {
      {"deepseek-moe-16b",
       {28,
        2048,
        16,
        16,
        128,
        10944,
        102400,
        4096,
        10000,
        1e-6f,
        {.experts = 64,
         .topk = 6,
         .expert_hidden = 1408,
         .shared = 2,
         .first_dense = 1,
         .sigmoid = false,
         .norm_topk = false,
         .aux_alpha = 0.001}}},
      {"qwen3-30b-a3b-moe",
       {48,
        2048,
        32,
        4,
        128,
        6144,
        151936,
        40960,
        1e6,
        1e-6f,
        {.experts = 128,
         .topk = 8,
         .expert_hidden = 768,
         .shared = 0,
         .first_dense = 0,
         .sigmoid = false,
         .norm_topk = true,
         .aux_alpha = 0.001}}},
      {"deepseek-v3-moe",
       {61,
        7168,
        128,
        128,
        128,
        18432,
        129280,
        4096,
        10000,
        1e-6f,
        {.experts = 256,
         .topk = 8,
         .expert_hidden = 2048,
         .shared = 1,
         .first_dense = 3,
         .sigmoid = true,
         .norm_topk = true,
         .aux_alpha = 0.0001,
         .bias_update_speed = 0.001}}},
  };
  return p;
}
}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& [name, s] : presets()) out.push_back(name);
    return out;
  }();
  return names;
}

DecoderConfig preset(const std::string& name) {
  const Shape& s = presets().at(name);
  DecoderConfig c = base_config();
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
  c.moe = s.moe;
  complete_config(c);
  return c;
}

}  // namespace peng::deepseek
