#include "launch/model_setup.h"

#include "models/gpt2/hf_checkpoint.h"

namespace peng {

namespace {
// An explicit size from the config must agree with the one the model already has.
void agree(const char* field, int64_t requested, int64_t actual, const std::string& source) {
  PENG_INPUT_CHECK(requested == 0 || requested == actual, "model.", field, " = ", requested,
                   " conflicts with ", source, " (", actual, ")");
}
}  // namespace

Gpt2Config resolve_model_config(const proto::TrainConfig& config) {
  const auto& m = config.model();
  Gpt2Config c;
  if (!m.init_from().empty()) {
    PENG_INPUT_CHECK(m.preset().empty(), "model.preset and model.init_from are exclusive");
    c = read_hf_gpt2_config(m.init_from());
    const std::string src = m.init_from() + "/config.json";
    agree("n_layer", m.n_layer(), c.n_layer, src);
    agree("n_head", m.n_head(), c.n_head, src);
    agree("n_embd", m.n_embd(), c.n_embd, src);
    agree("vocab_size", m.vocab_size(), c.vocab_size, src);
    agree("max_seq_len", m.max_seq_len(), c.max_seq_len, src);
  } else {
    if (!m.preset().empty()) {
      c = gpt2_preset(m.preset());
    } else {
      const char* hint =
          " is not set (use --model PRESET, --init-from DIR, or all of "
          "--n-layer/--n-head/--n-embd/--vocab-size)";
      PENG_INPUT_CHECK(m.n_layer() != 0, "model.n_layer", hint);
      PENG_INPUT_CHECK(m.n_head() != 0, "model.n_head", hint);
      PENG_INPUT_CHECK(m.n_embd() != 0, "model.n_embd", hint);
      PENG_INPUT_CHECK(m.vocab_size() != 0, "model.vocab_size", hint);
      c.max_seq_len = config.training().seq_len();
    }
    if (m.n_layer()) c.n_layer = m.n_layer();
    if (m.n_head()) c.n_head = m.n_head();
    if (m.n_embd()) c.n_embd = m.n_embd();
    if (m.vocab_size()) c.vocab_size = m.vocab_size();
    if (m.max_seq_len()) c.max_seq_len = m.max_seq_len();
  }
  c.validate();
  return c;
}

std::unique_ptr<Gpt2Model> build_model(const proto::TrainConfig& config, const Gpt2Config& c,
                                       Backend& backend, const TpGroup& tp,
                                       const PipelineLayout& pipe) {
  auto model = std::make_unique<Gpt2Model>(c, backend, tp, pipe);
  if (!config.model().init_from().empty()) {
    model->load_state(load_hf_gpt2(config.model().init_from(), c));
  } else {
    model->init_random(config.model().seed());
  }
  return model;
}

}  // namespace peng
