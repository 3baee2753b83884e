// The deepseek_moe family's registration record and its Hugging Face tensor mapping.
#include "models/decoder/decoder.h"
#include "models/deepseek/deepseek.h"

namespace peng {

namespace {

// The Hugging Face tensors of one parameter: q/k/v and gate/up split as for Llama (an
// expert's gate/up of moe_intermediate_size, the shared experts' of n_shared times that).
HfTensor hf_tensor(const DecoderConfig& c, const Parameter& p) {
  const std::string name = p.name == "lm_head.weight" ? p.name : "model." + p.name;
  const std::string stem = name.substr(0, name.size() - std::string(".weight").size());
  const std::string dir = stem.substr(0, stem.rfind('.') + 1);
  const auto part = [&](const std::string& proj, int64_t rows) {
    return std::make_pair(dir + proj + ".weight", Shape{rows, p.logical_shape[1]});
  };
  if (stem.ends_with("." + c.names.qkv)) {
    return {
        p.name,
        {part("q_proj", c.q_width()), part("k_proj", c.kv_width()), part("v_proj", c.kv_width())}};
  }
  if (stem.ends_with("." + c.names.mlp_in)) {
    const int64_t hidden = p.logical_shape[0] / 2;  // dense, routed or shared
    return {p.name, {part("gate_proj", hidden), part("up_proj", hidden)}};
  }
  return {p.name, {{name, p.logical_shape}}};
}

HfWeights hf_weights(const DecoderConfig& c) {
  HfWeights w;
  std::vector<HfTensor> buffers;  // written after the weights, as PyTorch's state_dict does
  for (const Parameter& p : parameter_table(c)) {
    (p.trained ? w.tensors : buffers).push_back(hf_tensor(c, p));
  }
  w.tensors.insert(w.tensors.end(), buffers.begin(), buffers.end());
  for (int i = 0; i < c.n_layer; ++i) {
    w.ignored["model.layers." + std::to_string(i) + ".self_attn.rotary_emb.inv_freq"] =
        std::nullopt;
  }
  w.model = detail::concat(
      "a deepseek_moe model with num_hidden_layers=", c.n_layer, ", hidden_size=", c.n_embd,
      ", n_routed_experts=", c.moe.experts, ", n_shared_experts=", c.moe.shared,
      ", first_k_dense_replace=", c.moe.first_dense, ", vocab_size=", c.vocab_size);
  return w;
}

}  // namespace

const ModelFamily& deepseek_moe_family() {
  static const ModelFamily f = {
      .name = "deepseek_moe",
      .description = "DeepSeek-MoE (DeepSeek): Llama attention, routed and shared SwiGLU experts",
      .hf_model_types = {"deepseek_moe", "deepseek"},
      .presets = deepseek::preset_names(),
      .preset = deepseek::preset,
      .custom = deepseek::base_config,
      .complete = deepseek::complete_config,
      .from_hf_config = deepseek::parse_hf_config,
      .to_hf_config = deepseek::hf_config_json,
      .hf_weights = hf_weights,
      .build = build_decoder};
  return f;
}

}  // namespace peng
