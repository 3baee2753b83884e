// The llama, qwen2 and qwen3 families' registration records and their Hugging Face mapping
// (the table in llama.h).
#include "peng/models/decoder/decoder.h"
#include "peng/models/llama/llama.h"
#include "peng/models/llama/variant.h"

namespace peng {

HfTensor llama::hf_tensor(const DecoderConfig& c, const Parameter& p) {
  const std::string name = p.name == "lm_head.weight" ? p.name : "model." + p.name;
  const std::string suffix = name.ends_with(".bias") ? ".bias" : ".weight";
  const std::string stem = name.substr(0, name.size() - suffix.size());
  Shape rest(p.logical_shape.begin() + 1, p.logical_shape.end());
  const auto part = [&](const std::string& proj, int64_t rows) {
    Shape s = {rows};
    s.insert(s.end(), rest.begin(), rest.end());
    return std::make_pair(stem.substr(0, stem.rfind('.') + 1) + proj + suffix, s);
  };
  if (stem.ends_with("." + c.names.qkv)) {
    return {
        p.name,
        {part("q_proj", c.q_width()), part("k_proj", c.kv_width()), part("v_proj", c.kv_width())}};
  }
  if (stem.ends_with("." + c.names.mlp_in)) {  // [gate | up]: a dense MLP's or an expert's
    const int64_t hidden = p.logical_shape[0] / 2;
    return {p.name, {part("gate_proj", hidden), part("up_proj", hidden)}};
  }
  return {p.name, {{name, p.logical_shape}}};
}

namespace {

using llama::Variant;

HfWeights hf_weights(const DecoderConfig& c) {
  HfWeights w;
  for (const Parameter& p : parameter_table(c)) {
    w.tensors.push_back(llama::hf_tensor(c, p));
  }
  if (c.tied_embeddings) w.ignored["lm_head.weight"] = Shape{c.vocab_size, c.n_embd};
  for (int i = 0; i < c.n_layer; ++i) {  // RoPE buffers of old checkpoints
    w.ignored["model.layers." + std::to_string(i) + ".self_attn.rotary_emb.inv_freq"] =
        std::nullopt;
  }
  w.model = detail::concat("a ", c.family, " model with num_hidden_layers=", c.n_layer,
                           ", hidden_size=", c.n_embd, ", num_attention_heads=", c.n_head,
                           ", num_key_value_heads=", c.n_kv_head, ", vocab_size=", c.vocab_size,
                           c.tied_embeddings ? ", tied" : ", untied", " embeddings");
  return w;
}

Json to_hf_config(const DecoderConfig& c, DType dtype) { return llama::hf_config_json(c, dtype); }

template <Variant V>
ModelFamily family(const char* description) {
  return {.name = llama::family_name(V),
          .description = description,
          .hf_model_types = {llama::family_name(V)},
          .presets = llama::preset_names(V),
          .preset = llama::preset,
          .custom = [] { return llama::base_config(V); },
          .complete = [](DecoderConfig& c) { llama::complete_config(V, c); },
          .from_hf_config = [](const JsonFields& f) { return llama::parse_hf_config(V, f); },
          .to_hf_config = to_hf_config,
          .hf_weights = hf_weights,
          .build = build_decoder};
}

}  // namespace

const ModelFamily& llama_family() {
  static const ModelFamily f =
      family<Variant::kLlama>("Llama 2/3 (Meta): RMSNorm, RoPE, grouped-query attention, SwiGLU");
  return f;
}

const ModelFamily& qwen2_family() {
  static const ModelFamily f =
      family<Variant::kQwen2>("Qwen2/Qwen2.5 (Alibaba): Llama + q/k/v biases");
  return f;
}

const ModelFamily& qwen3_family() {
  static const ModelFamily f =
      family<Variant::kQwen3>("Qwen3 (Alibaba): Llama + per-head q/k RMSNorm, head_dim apart");
  return f;
}

}  // namespace peng
