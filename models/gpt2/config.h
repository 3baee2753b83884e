// GPT-2 model hyper-parameters and the named presets.
#pragma once

#include <cstdint>
#include <string>

#include "peng/models/decoder/config.h"

namespace peng {

struct Gpt2Config {
  int n_layer = 12;
  int n_head = 12;
  int n_embd = 768;
  int64_t vocab_size = 50257;  // real vocabulary
  int max_seq_len = 1024;      // rows of the position embedding (HF n_positions)
  float layernorm_eps = 1e-5f;

  // The vocabulary padded to a multiple of 128 x tp (see DecoderConfig::padded_vocab).
  int64_t padded_vocab(int tp = 1) const {
    const int64_t m = 128 * int64_t(tp);
    return (vocab_size + m - 1) / m * m;
  }
  int head_dim() const { return n_embd / n_head; }
  // Throws peng::InputError naming the field when the numbers do not make a model.
  void validate() const;
};

// gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m. Throws InputError for an unknown name.
Gpt2Config gpt2_preset(const std::string& name);

// GPT-2 as a decoder: LayerNorm, learned positions, multi-head attention and a GELU MLP of
// 4 n_embd with biases, tied LM head, Conv1D (in, out) weights, HF GPT-2 parameter names.
DecoderConfig to_decoder(const Gpt2Config& c);
// The GPT-2 sizes of a decoder config of the gpt2 family.
Gpt2Config gpt2_config(const DecoderConfig& c);

}  // namespace peng
