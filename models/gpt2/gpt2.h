// The GPT-2 language model: the DecoderModel of a Gpt2Config (models/gpt2/config.h; the API
// of releases before model families: build_model(to_decoder(config), ...) is the same), with
// Hugging Face GPT-2 parameter names (without the `transformer.` prefix): wte, wpe,
// h.{i}.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}, ln_f. The LM head is
// tied to wte (stored padded to (padded_vocab, C); see models/decoder/decoder.h).
//
// Usage per micro-batch: forward(tokens, targets) -> mean loss; backward(scale) adds
// scale * d(sum of per-position losses)/d(params) into the parameter gradients.
#pragma once

#include "peng/models/decoder/decoder.h"
#include "peng/models/gpt2/config.h"

namespace peng {

// Parameters of the whole model (real vocabulary, every stage and shard), with or without
// the position embedding.
int64_t gpt2_num_params(const Gpt2Config& config, bool include_position_embedding = true);

class Gpt2Model : public DecoderModel {
 public:
  Gpt2Model(const Gpt2Config& config, Backend& backend, const TpGroup& tp = {},
            const PipelineLayout& pipe = {})
      : DecoderModel(to_decoder(config), backend, tp, pipe), config_(config) {}

  const Gpt2Config& config() const { return config_; }

 private:
  Gpt2Config config_;
};

}  // namespace peng
