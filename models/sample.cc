#include "peng/models/sample.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace peng {

std::vector<int32_t> sample_tokens(CausalLM& model, const std::vector<int32_t>& prompt, int n_new,
                                   int context, int top_k, uint64_t seed, int64_t vocab_limit,
                                   float temperature) {
  const LastLogits last_logits = [&model](const Tensor& tokens) {
    model.forward(tokens, Tensor());
    return model.logits_row(tokens.dim(1) - 1);
  };
  return sample_tokens(last_logits, model.arch(), prompt, n_new, context, top_k, seed, vocab_limit,
                       temperature);
}

std::vector<int32_t> sample_tokens(const LastLogits& last_logits, const DecoderConfig& config,
                                   const std::vector<int32_t>& prompt, int n_new, int context,
                                   int top_k, uint64_t seed, int64_t vocab_limit,
                                   float temperature) {
  PENG_CHECK(!prompt.empty(), "sample_tokens: empty prompt");
  PENG_CHECK(context > 0 && context <= config.max_seq_len, "sample_tokens: context ", context,
             " outside [1, ", config.max_seq_len, "]");
  const int64_t vocab =
      vocab_limit > 0 ? std::min(vocab_limit, config.vocab_size) : config.vocab_size;
  const int k = int(std::min<int64_t>(std::max(top_k, 1), vocab));
  std::mt19937_64 gen(seed);
  std::vector<int32_t> seq = prompt, out;
  std::vector<int> order(static_cast<size_t>(vocab));
  std::vector<double> probs(static_cast<size_t>(k));
  for (int i = 0; i < n_new; ++i) {
    const int64_t len = std::min<int64_t>(int64_t(seq.size()), context);
    Tensor tokens = Tensor::empty({1, len}, DType::kI32);
    std::copy(seq.end() - len, seq.end(), tokens.data<int32_t>());
    Tensor row = last_logits(tokens);
    const float* logits = row.data<float>();
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int a, int b) { return logits[a] > logits[b]; });
    const double top = logits[order[0]];
    double sum = 0;
    for (int j = 0; j < k; ++j) {
      probs[size_t(j)] = std::exp((logits[order[size_t(j)]] - top) / temperature);
      sum += probs[size_t(j)];
    }
    double u = std::uniform_real_distribution<double>(0.0, sum)(gen);
    int pick = k - 1;
    for (int j = 0; j < k; ++j) {
      u -= probs[size_t(j)];
      if (u <= 0) {
        pick = j;
        break;
      }
    }
    seq.push_back(order[size_t(pick)]);
    out.push_back(order[size_t(pick)]);
  }
  return out;
}

}  // namespace peng
