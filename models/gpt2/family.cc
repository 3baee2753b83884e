// GPT-2 as a registered family: presets gpt2-124m ... gpt2-1558m, HF GPT2LMHeadModel folders.
#include "peng/models/gpt2/family.h"

#include "peng/models/decoder/decoder.h"
#include "peng/models/gpt2/hf_checkpoint.h"

namespace peng {

namespace {

DecoderConfig preset(const std::string& name) { return to_decoder(gpt2_preset(name)); }

DecoderConfig custom() {
  DecoderConfig c = to_decoder(Gpt2Config{});
  c.n_layer = c.n_head = c.n_kv_head = 0;
  c.n_embd = c.head_dim = c.ffn_hidden = c.vocab_size = 0;
  c.max_seq_len = 0;
  return c;
}

// GPT-2's fixed structure: multi-head attention, head_dim = n_embd / n_head, MLP of 4 n_embd,
// tied head, learned positions. Sizes left at 0 are derived; others must agree.
void complete(DecoderConfig& c) {
  const DecoderConfig want = to_decoder(gpt2_config(c));
  const auto agree = [](const char* field, int64_t& value, int64_t derived, const char* rule) {
    if (value == 0) value = derived;
    PENG_INPUT_CHECK(value == derived, "model.", field, " = ", value, ": GPT-2 has ", rule, " (",
                     derived, ")");
  };
  int64_t kv = c.n_kv_head, hd = c.head_dim;
  agree("n_kv_head", kv, want.n_kv_head, "multi-head attention, n_kv_head = n_head");
  agree("head_dim", hd, want.head_dim, "head_dim = n_embd / n_head");
  agree("ffn_hidden", c.ffn_hidden, want.ffn_hidden, "an MLP of 4 x n_embd");
  c.n_kv_head = int(kv);
  c.head_dim = hd;
  PENG_INPUT_CHECK(c.tied_embeddings,
                   "model.tie_embeddings = false: GPT-2 ties the LM head to wte");
  PENG_INPUT_CHECK(c.rope.theta == 0, "model.rope_theta: GPT-2 has learned positions, no RoPE");
  gpt2_config(c).validate();
}

DecoderConfig from_hf_config(const JsonFields& f) { return to_decoder(parse_hf_gpt2_config(f)); }

Json to_hf_config(const DecoderConfig& c, DType) { return hf_gpt2_config_json(gpt2_config(c)); }

HfWeights hf_weights(const DecoderConfig& c) { return gpt2_hf_weights(gpt2_config(c)); }

}  // namespace

const ModelFamily& gpt2_family() {
  static const ModelFamily family{
      .name = "gpt2",
      .description = "GPT-2 (OpenAI): LayerNorm, learned positions, GELU MLP, tied head",
      .hf_model_types = {"gpt2"},
      .presets = {"gpt2-124m", "gpt2-350m", "gpt2-774m", "gpt2-1558m"},
      .preset = preset,
      .custom = custom,
      .complete = complete,
      .from_hf_config = from_hf_config,
      .to_hf_config = to_hf_config,
      .hf_weights = hf_weights,
      .build = build_decoder};
  return family;
}

}  // namespace peng
