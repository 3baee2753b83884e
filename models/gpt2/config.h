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
  // The vocabulary padded to a multiple of 128 x tp, so it splits evenly over tp ranks in
  // 128-aligned shards (Megatron's make-vocab-size-divisible-by x tp).
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

}  // namespace peng
