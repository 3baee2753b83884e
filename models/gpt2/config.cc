#include "peng/models/gpt2/config.h"

#include "peng/core/error.h"

namespace peng {

void Gpt2Config::validate() const {
  PENG_INPUT_CHECK(n_layer > 0, "model.n_layer must be > 0, got ", n_layer);
  PENG_INPUT_CHECK(n_head > 0, "model.n_head must be > 0, got ", n_head);
  PENG_INPUT_CHECK(n_embd > 0, "model.n_embd must be > 0, got ", n_embd);
  PENG_INPUT_CHECK(n_embd % n_head == 0, "model.n_embd (", n_embd,
                   ") is not divisible by model.n_head (", n_head, ")");
  PENG_INPUT_CHECK(vocab_size > 0, "model.vocab_size must be > 0, got ", vocab_size);
  PENG_INPUT_CHECK(max_seq_len > 0, "model.max_seq_len must be > 0, got ", max_seq_len);
}

Gpt2Config gpt2_preset(const std::string& name) {
  Gpt2Config c;
  if (name == "gpt2-124m") {
    c.n_layer = 12, c.n_head = 12, c.n_embd = 768;
  } else if (name == "gpt2-350m") {
    c.n_layer = 24, c.n_head = 16, c.n_embd = 1024;
  } else if (name == "gpt2-774m") {
    c.n_layer = 36, c.n_head = 20, c.n_embd = 1280;
  } else if (name == "gpt2-1558m") {
    c.n_layer = 48, c.n_head = 25, c.n_embd = 1600;
  } else {
    throw InputError("unknown model preset '" + name +
                     "' (known: gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m)");
  }
  return c;
}

DecoderConfig to_decoder(const Gpt2Config& g) {
  DecoderConfig c;
  c.family = "gpt2";
  c.n_layer = g.n_layer;
  c.n_head = c.n_kv_head = g.n_head;
  c.n_embd = g.n_embd;
  c.head_dim = g.n_head > 0 ? g.n_embd / g.n_head : 0;
  c.ffn_hidden = 4 * int64_t(g.n_embd);
  c.vocab_size = g.vocab_size;
  c.max_seq_len = g.max_seq_len;
  c.norm = NormKind::kLayerNorm;
  c.norm_eps = g.layernorm_eps;
  c.position_embedding = true;
  c.qkv_bias = c.attn_out_bias = c.mlp_bias = true;
  c.mlp = MlpKind::kGelu;
  c.tied_embeddings = true;
  c.weight_layout = WeightLayout::kInOut;
  c.names = {.token_embedding = "wte",
             .position_embedding = "wpe",
             .layer = "h",
             .attn_norm = "ln_1",
             .attention = "attn",
             .qkv = "c_attn",
             .attn_out = "c_proj",
             .mlp_norm = "ln_2",
             .mlp = "mlp",
             .mlp_in = "c_fc",
             .mlp_out = "c_proj",
             .final_norm = "ln_f"};
  return c;
}

Gpt2Config gpt2_config(const DecoderConfig& c) {
  Gpt2Config g;
  g.n_layer = c.n_layer;
  g.n_head = c.n_head;
  g.n_embd = int(c.n_embd);
  g.vocab_size = c.vocab_size;
  g.max_seq_len = c.max_seq_len;
  g.layernorm_eps = c.norm_eps;
  return g;
}

}  // namespace peng
