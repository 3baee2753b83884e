#include "models/gpt2/config.h"

#include "core/error.h"

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

}  // namespace peng
