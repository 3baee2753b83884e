// Text generation from a causal language model: top-k sampling over a sliding context
// window.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "peng/models/model.h"

namespace peng {

// Appends `n_new` tokens to `prompt` (at least one token) and returns only the new
// ones. The context is the last `context` tokens (<= max_seq_len); each new token is
// drawn from softmax(logits / temperature) restricted to the k most likely tokens,
// with a generator seeded by `seed` (same seed, same text). Only ids below
// `vocab_limit` (e.g. the tokenizer's vocabulary; <= 0: the model's) are drawn.
// Overwrites the model's
// saved activations: call between training steps, not between forward and backward.
std::vector<int32_t> sample_tokens(CausalLM& model, const std::vector<int32_t>& prompt, int n_new,
                                   int context, int top_k, uint64_t seed, int64_t vocab_limit = 0,
                                   float temperature = 1.0f);

// The same with the model behind `last_logits`: tokens (1, len) -> the logits of the last
// position over the whole padded vocabulary, on the host (a pipeline computes them on its
// last stage and shares them, so every rank draws the same tokens).
using LastLogits = std::function<Tensor(const Tensor& tokens)>;
std::vector<int32_t> sample_tokens(const LastLogits& last_logits, const DecoderConfig& config,
                                   const std::vector<int32_t>& prompt, int n_new, int context,
                                   int top_k, uint64_t seed, int64_t vocab_limit = 0,
                                   float temperature = 1.0f);

}  // namespace peng
