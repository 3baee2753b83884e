// The deepseek_moe family's registration record and its Hugging Face tensor mapping: Llama's
// (models/llama/llama.h; an expert's gate/up split like a dense MLP's), with the selection
// biases, buffers, written after the weights as PyTorch's state_dict does.
#include "peng/models/decoder/decoder.h"
#include "peng/models/deepseek/deepseek.h"
#include "peng/models/llama/llama.h"

namespace peng {

namespace {

HfWeights hf_weights(const DecoderConfig& c) {
  HfWeights w;
  std::vector<HfTensor> buffers;  // written after the weights, as PyTorch's state_dict does
  for (const Parameter& p : parameter_table(c)) {
    (p.trained ? w.tensors : buffers).push_back(llama::hf_tensor(c, p));
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
