// GPT-2 model hyper-parameters and the named presets.
#pragma once

#include <cstdint>
#include <string>

namespace peng {

struct Gpt2Config {
  int n_layer = 12;
  int n_head = 12;
  int n_embd = 768;
  int64_t vocab_size = 50257;  // real vocabulary
  int max_seq_len = 1024;      // rows of the position embedding (HF n_positions)
  float layernorm_eps = 1e-5f;

  // Vocabulary padded to a multiple of 128 (the padded rows of wte are always zero).
  int64_t padded_vocab() const { return (vocab_size + 127) / 128 * 128; }
  int head_dim() const { return n_embd / n_head; }
  // Throws peng::InputError naming the field when the numbers do not make a model.
  void validate() const;
};

// gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m. Throws InputError for an unknown name.
Gpt2Config gpt2_preset(const std::string& name);

}  // namespace peng
