#include "peng/models/gpt2/hf_checkpoint.h"

#include <climits>

#include "peng/core/error.h"
#include "peng/models/registry.h"

namespace peng {

namespace fs = std::filesystem;

namespace {

std::string config_summary(const Gpt2Config& cfg) {
  return detail::concat("n_layer=", cfg.n_layer, ", n_embd=", cfg.n_embd,
                        ", vocab_size=", cfg.vocab_size, ", n_positions=", cfg.max_seq_len);
}

// The features of config.json that peng's GPT-2 does not have are refused by key.
void check_gpt2_features(const JsonFields& f, const Gpt2Config& cfg) {
  f.expect("model_type", "gpt2", "expected \"gpt2\"");
  if (const auto act = f.string("activation_function")) {
    if (*act != "gelu_new" && *act != "gelu_pytorch_tanh" && *act != "gelu_fast") {
      f.fail("activation_function", "is \"" + *act +
                                        "\"; peng's GPT-2 uses the tanh GELU (\"gelu_new\" or "
                                        "\"gelu_pytorch_tanh\")");
    }
  }
  if (!f.boolean("tie_word_embeddings").value_or(true)) {
    f.fail("tie_word_embeddings", "is false; peng's GPT-2 ties the LM head to wte");
  }
  f.expect(
      "n_inner", 4 * int64_t(cfg.n_embd),
      detail::concat("peng's GPT-2 MLP has 4*n_embd = ", 4 * int64_t(cfg.n_embd), " (or null)"));
  if (!f.boolean("scale_attn_weights").value_or(true)) {
    f.fail("scale_attn_weights", "is false; peng always scales attention");
  }
  if (f.boolean("scale_attn_by_inverse_layer_idx").value_or(false)) {
    f.fail("scale_attn_by_inverse_layer_idx", "is true; not supported");
  }
  if (f.boolean("add_cross_attention").value_or(false)) {
    f.fail("add_cross_attention", "is true; not supported");
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// config.json

Gpt2Config parse_hf_gpt2_config(const JsonFields& f) {
  Gpt2Config cfg;
  cfg.n_layer = int(*f.integer("n_layer", true, 1, INT_MAX));
  cfg.n_head = int(*f.integer("n_head", true, 1, INT_MAX));
  cfg.n_embd = int(*f.integer("n_embd", true, 1, INT_MAX));
  cfg.vocab_size = *f.integer("vocab_size", true, 1, INT32_MAX);
  std::optional<int64_t> n_positions = f.integer("n_positions", false, 1, INT_MAX);
  if (!n_positions) n_positions = f.integer("n_ctx", false, 1, INT_MAX);
  PENG_INPUT_CHECK(n_positions.has_value(), f.file(),
                   ": missing field \"n_positions\" (or \"n_ctx\")");
  cfg.max_seq_len = int(*n_positions);
  PENG_INPUT_CHECK(cfg.n_embd % cfg.n_head == 0, f.file(), ": field \"n_embd\" (", cfg.n_embd,
                   ") is not divisible by field \"n_head\" (", cfg.n_head, ")");
  const double eps = f.number("layer_norm_epsilon", 0, 1).value_or(1e-5);  // HF's default
  if (eps <= 0 || eps >= 1) {
    f.fail("layer_norm_epsilon", "must be in (0, 1), got " + f.find("layer_norm_epsilon")->dump());
  }
  cfg.layernorm_eps = float(eps);
  check_gpt2_features(f, cfg);
  try {
    cfg.validate();
  } catch (const InputError& e) {
    throw InputError(f.file() + ": " + e.what());
  }
  return cfg;
}

Gpt2Config read_hf_gpt2_config(const fs::path& dir) {
  const Json j = read_hf_config_json(dir);
  return parse_hf_gpt2_config(JsonFields(j, (dir / "config.json").string()));
}

Json hf_gpt2_config_json(const Gpt2Config& cfg) {
  Json j = Json::object();
  j["model_type"] = "gpt2";
  j["architectures"] = Json::array({"GPT2LMHeadModel"});
  j["vocab_size"] = cfg.vocab_size;
  j["n_positions"] = cfg.max_seq_len;
  j["n_ctx"] = cfg.max_seq_len;
  j["n_embd"] = cfg.n_embd;
  j["n_layer"] = cfg.n_layer;
  j["n_head"] = cfg.n_head;
  j["layer_norm_epsilon"] = shortest_decimal(cfg.layernorm_eps);
  j["activation_function"] = "gelu_new";
  j["tie_word_embeddings"] = true;
  return j;
}

void write_hf_gpt2_config(const fs::path& dir, const Gpt2Config& cfg) {
  write_hf_config_json(dir, hf_gpt2_config_json(cfg));
}

// ---------------------------------------------------------------------------------------------
// parameter names and shapes

std::vector<std::string> gpt2_parameter_names(const Gpt2Config& cfg) {
  std::vector<std::string> names;
  for (const Parameter& p : parameter_table(to_decoder(cfg))) {
    names.push_back(p.name);
  }
  return names;
}

Shape gpt2_parameter_shape(const Gpt2Config& cfg, const std::string& name) {
  for (const Parameter& p : parameter_table(to_decoder(cfg))) {
    if (p.name == name) return p.logical_shape;
  }
  throw InputError(
      detail::concat("'", name, "' is not a parameter of GPT-2 with n_layer=", cfg.n_layer));
}

// ---------------------------------------------------------------------------------------------
// weights

HfWeights gpt2_hf_weights(const Gpt2Config& cfg) {
  HfWeights w;
  for (const Parameter& p : parameter_table(to_decoder(cfg))) {
    w.tensors.push_back({p.name, {{p.name, p.logical_shape}}});
  }
  w.read_prefix = "transformer.";  // GPT2LMHeadModel's names; GPT2Model's have none
  w.ignored["lm_head.weight"] = Shape{cfg.vocab_size, cfg.n_embd};  // tied to wte
  for (int i = 0; i < cfg.n_layer; ++i) {  // causal-mask buffers of old checkpoints
    for (const char* buffer : {".attn.bias", ".attn.masked_bias"}) {
      w.ignored["h." + std::to_string(i) + buffer] = std::nullopt;
    }
  }
  w.model = "a GPT-2 model with " + config_summary(cfg);
  return w;
}

std::map<std::string, Tensor> load_hf_gpt2(const fs::path& dir, const Gpt2Config& cfg) {
  cfg.validate();
  return read_hf_weights(dir, gpt2_hf_weights(cfg));
}

void save_hf_gpt2(const fs::path& dir, const Gpt2Config& cfg,
                  const std::map<std::string, Tensor>& params, DType dtype) {
  cfg.validate();
  std::map<std::string, Tensor> logical = params;
  auto wte = logical.find("wte.weight");
  if (wte != logical.end() && wte->second.defined() &&
      wte->second.shape() == Shape{cfg.padded_vocab(), cfg.n_embd}) {
    wte->second = wte->second.slice(0, cfg.vocab_size);  // drop the padding rows
  }
  write_hf_weights(dir, gpt2_hf_weights(cfg), logical, dtype);
  write_hf_gpt2_config(dir, cfg);
}

}  // namespace peng
