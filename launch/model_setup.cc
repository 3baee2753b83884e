#include "peng/launch/model_setup.h"

#include <sstream>

namespace peng {

namespace {

// An explicit value from the config must agree with the one the model already has.
void agree(const char* field, double requested, double actual, const std::string& source) {
  PENG_INPUT_CHECK(requested == 0 || requested == actual, "model.", field, " = ", requested,
                   " conflicts with ", source, " (", actual, ")");
}

// The sizes a preset derives from its others (GPT-2's head_dim = n_embd / n_head and MLP of
// 4 n_embd, multi-head n_kv_head = n_head) set back to 0, so that overridden sizes derive
// them anew: a size is derived when the family's `complete` gives it back from 0.
void forget_derived_sizes(const ModelFamily& family, DecoderConfig& c) {
  const auto derived = [&](auto DecoderConfig::*field) {
    DecoderConfig probe = c;
    probe.*field = 0;
    try {
      family.complete(probe);
    } catch (const InputError&) {
      return false;  // required, not derived
    }
    return probe.*field == c.*field;
  };
  const bool kv = derived(&DecoderConfig::n_kv_head), hd = derived(&DecoderConfig::head_dim),
             ffn = derived(&DecoderConfig::ffn_hidden);
  if (kv) c.n_kv_head = 0;
  if (hd) c.head_dim = 0;
  if (ffn) c.ffn_hidden = 0;
}

// The Mixture-of-Experts sizes and switches the config sets.
void apply_moe_overrides(const proto::ModelConfig& m, MoeConfig& moe) {
  if (m.experts()) moe.experts = m.experts();
  if (m.experts_per_token()) moe.topk = m.experts_per_token();
  if (m.expert_ffn()) moe.expert_hidden = m.expert_ffn();
  if (m.has_shared_experts()) moe.shared = m.shared_experts();
  if (m.has_first_dense_layers()) moe.first_dense = m.first_dense_layers();
  if (!m.scoring().empty()) {
    PENG_INPUT_CHECK(m.scoring() == "softmax" || m.scoring() == "sigmoid", "model.scoring \"",
                     m.scoring(), "\" is not softmax or sigmoid");
    moe.sigmoid = m.scoring() == "sigmoid";
  }
  if (m.has_norm_topk()) moe.norm_topk = m.norm_topk();
  if (m.has_aux_loss_alpha()) moe.aux_alpha = m.aux_loss_alpha();
  if (m.has_bias_update_speed()) moe.bias_update_speed = m.bias_update_speed();
}

// Every size and switch the config sets, applied to `c` (a preset or custom sizes).
void apply_overrides(const proto::ModelConfig& m, DecoderConfig& c) {
  if (m.n_layer()) c.n_layer = m.n_layer();
  if (m.n_head()) c.n_head = m.n_head();
  if (m.n_embd()) c.n_embd = m.n_embd();
  if (m.vocab_size()) c.vocab_size = m.vocab_size();
  if (m.max_seq_len()) c.max_seq_len = m.max_seq_len();
  if (m.n_kv_head()) c.n_kv_head = m.n_kv_head();
  if (m.head_dim()) c.head_dim = m.head_dim();
  if (m.ffn_hidden()) c.ffn_hidden = m.ffn_hidden();
  if (m.rope_theta()) c.rope.theta = m.rope_theta();
  if (m.has_tie_embeddings()) c.tied_embeddings = m.tie_embeddings();
  apply_moe_overrides(m, c.moe);
}

// The config set by model.init_from's config.json; every size the config also sets must
// agree with it.
DecoderConfig from_folder(const proto::ModelConfig& m) {
  PENG_INPUT_CHECK(m.preset().empty(), "model.preset and model.init_from are exclusive");
  const DecoderConfig c = read_hf_config(m.init_from());
  const std::string src = m.init_from() + "/config.json";
  PENG_INPUT_CHECK(m.family().empty() || m.family() == c.family, "model.family = ", m.family(),
                   " conflicts with ", src, " (", c.family, ")");
  agree("n_layer", m.n_layer(), c.n_layer, src);
  agree("n_head", m.n_head(), c.n_head, src);
  agree("n_embd", m.n_embd(), double(c.n_embd), src);
  agree("vocab_size", m.vocab_size(), double(c.vocab_size), src);
  agree("max_seq_len", m.max_seq_len(), c.max_seq_len, src);
  agree("n_kv_head", m.n_kv_head(), c.n_kv_head, src);
  agree("head_dim", m.head_dim(), double(c.head_dim), src);
  agree("ffn_hidden", m.ffn_hidden(), double(c.ffn_hidden), src);
  agree("rope_theta", m.rope_theta(), c.rope.theta, src);
  PENG_INPUT_CHECK(!m.has_tie_embeddings() || m.tie_embeddings() == c.tied_embeddings,
                   "model.tie_embeddings = ", m.tie_embeddings() ? "true" : "false",
                   " conflicts with ", src);
  DecoderConfig requested = c;  // MoE settings given too must be the folder's
  apply_moe_overrides(m, requested.moe);
  const auto now = describe(requested), saved = describe(c);
  for (size_t i = 0; i < now.size(); ++i) {
    PENG_INPUT_CHECK(now[i] == saved[i], "model.", now[i].first, " = ", now[i].second,
                     " conflicts with ", src, " (", saved[i].second, ")");
  }
  return c;
}

}  // namespace

DecoderConfig resolve_model_config(const proto::TrainConfig& config) {
  const auto& m = config.model();
  if (!m.init_from().empty()) return from_folder(m);
  DecoderConfig c;
  if (!m.preset().empty()) {
    c = model_preset(m.preset());
    PENG_INPUT_CHECK(m.family().empty() || m.family() == c.family, "model.family = ", m.family(),
                     " conflicts with model.preset ", m.preset(), " (", c.family, ")");
    forget_derived_sizes(model_family(c.family), c);
  } else {
    c = model_family(m.family().empty() ? "gpt2" : m.family()).custom();
    const char* hint =
        " is not set (use --model PRESET, --init-from DIR, or all of "
        "--n-layer/--n-head/--n-embd/--vocab-size)";
    PENG_INPUT_CHECK(m.n_layer() != 0, "model.n_layer", hint);
    PENG_INPUT_CHECK(m.n_head() != 0, "model.n_head", hint);
    PENG_INPUT_CHECK(m.n_embd() != 0, "model.n_embd", hint);
    PENG_INPUT_CHECK(m.vocab_size() != 0, "model.vocab_size", hint);
    c.max_seq_len = config.training().seq_len();
  }
  apply_overrides(m, c);
  model_family(c.family).complete(c);
  return c;
}

int64_t active_parameters(const DecoderConfig& arch) {
  int64_t dense = 0, experts = 0;
  for (const Parameter& p : parameter_table(arch)) {
    if (!p.tie_primary || !p.trained || !p.flops) continue;
    (p.expert_parallel ? experts : dense) += shape_numel(p.logical_shape);
  }
  if (experts == 0) return dense;
  return dense + experts / arch.moe.experts * arch.moe.topk;  // k of the E equal experts
}

RecomputePolicy recompute_policy(const proto::TrainingConfig& t) {
  RecomputePolicy p;
  const std::string& mode = t.recompute();
  PENG_INPUT_CHECK(mode.empty() || mode == "none" || mode == "selective" || mode == "full",
                   "training.recompute \"", mode, "\" is not none, selective or full");
  PENG_INPUT_CHECK(t.recompute_modules().empty() || mode == "selective",
                   "training.recompute_modules needs training.recompute = selective");
  PENG_INPUT_CHECK(t.recompute_layers() >= 0, "training.recompute_layers must be >= 0, got ",
                   t.recompute_layers());
  p.full = mode == "full";
  if (mode == "selective") {
    std::stringstream list(t.recompute_modules().empty() ? "core_attn" : t.recompute_modules());
    for (std::string m; std::getline(list, m, ',');) {
      if (m == "core_attn") {
        p.core_attn = true;
      } else if (m == "mlp_act") {
        p.mlp_act = true;
      } else if (m == "norm") {
        p.norm = true;
      } else {
        throw InputError("training.recompute_modules: unknown module \"" + m +
                         "\" (known: core_attn, mlp_act, norm)");
      }
    }
  }
  if (p.any() && t.recompute_layers() > 0) p.layers = t.recompute_layers();
  return p;
}

namespace {
// Forward FLOPs per token of each layer's matmuls with its weights (2 N_layer).
std::vector<double> layer_forward_flops(const DecoderConfig& arch) {
  std::vector<double> out(static_cast<size_t>(arch.n_layer), 0.0);
  for (const Parameter& p : parameter_table(arch)) {
    if (p.layer < 0 || p.layer >= arch.n_layer || !p.trained || !p.flops) continue;
    const double n = double(shape_numel(p.logical_shape));
    out[size_t(p.layer)] += 2 * (p.expert_parallel ? n * arch.moe.topk / arch.moe.experts : n);
  }
  return out;
}
}  // namespace

FlopsShape flops_shape(const DecoderConfig& arch, int64_t seq_len, double attention_fraction,
                       const RecomputePolicy& recompute, const StageSplit& split) {
  FlopsShape s{.params = active_parameters(arch),
               .n_layer = arch.n_layer,
               .n_embd = arch.q_width(),
               .seq_len = seq_len,
               .attention_fraction = attention_fraction};
  const double attention = 4.0 * double(arch.q_width()) * double(seq_len) * attention_fraction;
  if (!recompute.full && !recompute.core_attn) return s;
  const std::vector<double> layers = layer_forward_flops(arch);
  const StageSplit stages = split.empty() ? StageSplit{arch.n_layer} : split;
  int l = 0;
  for (int in_stage : stages) {
    for (int i = 0; i < in_stage; ++i, ++l) {
      if (recompute.layers >= 0 && i >= recompute.layers) continue;
      s.recompute_flops_per_token += attention + (recompute.full ? layers[size_t(l)] : 0.0);
    }
  }
  return s;
}

LayerCosts layer_costs(const DecoderConfig& arch, int64_t seq_len) {
  LayerCosts c{.layer = layer_forward_flops(arch)};
  for (double& f : c.layer) f += 4.0 * double(arch.q_width()) * double(seq_len);
  c.last_extra = 2.0 * double(arch.n_embd) * double(arch.padded_vocab());
  return c;
}

std::unique_ptr<CausalLM> initial_model(const proto::TrainConfig& config, const DecoderConfig& c,
                                        Backend& backend, const TpGroup& tp,
                                        const PipelineLayout& pipe, const ExpertGroup& experts) {
  std::unique_ptr<CausalLM> model = build_model(c, backend, tp, pipe, experts);
  if (!config.model().init_from().empty()) {
    model->load_state(load_hf_model(config.model().init_from(), c));
  } else {
    model->init_random(config.model().seed());
  }
  return model;
}

}  // namespace peng
