#include "peng/launch/checkpointing.h"

#include "peng/checkpoint/manifest.h"
#include "peng/checkpoint/store.h"
#include "peng/core/cuda/memory.h"
#include "peng/core/error.h"
#include "peng/models/gpt2/config.h"
#include "peng/models/registry.h"
#include "peng/parallel/pipeline/schedule.h"

namespace peng {

namespace fs = std::filesystem;

namespace {

// The logical tensor `prefix + p.name` over [begin, end) of p's shard, at `data`.
ckpt::Region region(const std::string& prefix, const Parameter& p, int64_t begin, int64_t end,
                    float* data) {
  return {.tensor = prefix + p.name,
          .logical_shape = p.logical_shape,
          .global_shape = p.global_shape,
          .spec = p.shard,
          .begin = begin,
          .end = end,
          .data = data};
}

// Whether the values are sharded now (ZeRO 3 between steps; restores materialize them).
bool values_sharded(const RankState& s) {
  return s.value_shard && !s.params->flat_values().defined();
}
// The values: the flat buffer, or ZeRO 3's shard.
const Tensor& values_tensor(const RankState& s) {
  return values_sharded(s) ? *s.value_shard : s.params->flat_values();
}

// The host memory of the values and the moments: the training tensors, or their staging.
float* values_of(const RankState& s) {
  return s.staging ? s.staging->values() : values_tensor(s).data<float>();
}
float* exp_avg_of(const RankState& s) {
  return s.staging ? s.staging->exp_avg() : s.optimizer->exp_avg().data<float>();
}
float* exp_avg_sq_of(const RankState& s) {
  return s.staging ? s.staging->exp_avg_sq() : s.optimizer->exp_avg_sq().data<float>();
}

// The three regions (values and both moments) of a segment of the optimizer's spans.
void add_segment(const RankState& s, const ParamSegment& seg, std::vector<ckpt::Region>& out,
                 bool values) {
  const Parameter& p = *seg.param;
  const int64_t begin = seg.span.offset - p.offset, end = begin + seg.span.numel;
  if (values) {  // ZeRO 3 between steps: the values are in the shard, laid out like the state
    const int64_t at = values_sharded(s) ? seg.span.state_offset : seg.span.offset;
    out.push_back(region("model/", p, begin, end, values_of(s) + at));
  }
  out.push_back(region("optim/exp_avg/", p, begin, end, exp_avg_of(s) + seg.span.state_offset));
  out.push_back(
      region("optim/exp_avg_sq/", p, begin, end, exp_avg_sq_of(s) + seg.span.state_offset));
}

// The three state tensors and their staging, in the same order.
void copy_state(const RankState& s, bool to_host) {
  const Tensor* tensors[] = {&values_tensor(s), &s.optimizer->exp_avg(),
                             &s.optimizer->exp_avg_sq()};
  float* host[] = {s.staging->values(), s.staging->exp_avg(), s.staging->exp_avg_sq()};
  const int device = tensors[0]->device().index;
  for (int i = 0; i < 3; ++i) {
    PENG_CHECK(tensors[i]->device().is_cuda(), "checkpoint staging of host state ",
               tensors[i]->str());
    void* d = tensors[i]->raw_data();
    if (to_host) {
      cuda::copy_async(host[i], d, tensors[i]->nbytes(), cuda::CopyKind::kDeviceToHost, device);
    } else {
      cuda::copy_async(d, host[i], tensors[i]->nbytes(), cuda::CopyKind::kHostToDevice, device);
    }
  }
  cuda::synchronize(device);  // the staging may be read or rewritten once this returns
}

// ZeRO 0: the flat buffer's dp equal ranges of the weights every dp rank holds, and each
// expert weight's equal ranges over the ranks holding that expert.
std::vector<ParamSegment> replicated_share(const RankState& s) {
  const int64_t n = s.params->numel();
  const int64_t lo = n * s.dp_rank / s.dp_size, hi = n * (s.dp_rank + 1) / s.dp_size;
  std::vector<ParamSegment> out;
  for (const ParamSegment& seg : split_at_parameters(*s.params, {{lo, hi - lo, lo}})) {
    if (!seg.param->expert_parallel) out.push_back(seg);
  }
  for (const Parameter& p : s.params->all()) {
    if (!p.expert_parallel) continue;
    const int64_t m = p.numel, r = s.expert_dp_rank, g = s.expert_dp_size;
    const int64_t b = p.offset + m * r / g, e = p.offset + m * (r + 1) / g;
    if (e > b) out.push_back({{b, e - b, b}, &p});
  }
  return out;
}

}  // namespace

std::vector<ckpt::Region> save_regions(const RankState& s) {
  const std::vector<ParamSegment> share =
      s.sharded_optimizer ? split_at_parameters(*s.params, s.optim_spans) : replicated_share(s);
  std::vector<ckpt::Region> out;
  const auto owned = [&](const Parameter& p) { return owned_ranges(p, s.tp_rank); };
  for (const ParamSegment& seg : restrict_segments(share, owned)) {
    add_segment(s, seg, out, /*values=*/true);
  }
  return out;
}

std::vector<ckpt::Region> load_regions(const RankState& s) {
  std::vector<ckpt::Region> out;
  for (Parameter& p : s.params->all()) {
    out.push_back(region("model/", p, 0, p.numel, values_of(s) + p.offset));
  }
  for (const ParamSegment& seg : split_at_parameters(*s.params, s.optim_spans)) {
    add_segment(s, seg, out, /*values=*/false);
  }
  return out;
}

HostStaging::HostStaging(int64_t values, int64_t state)
    : buffer_(std::make_unique<cuda::PinnedBuffer>(size_t(values + 2 * state) * sizeof(float))),
      values_(values),
      state_(state) {}

HostStaging::~HostStaging() = default;

float* HostStaging::values() const { return static_cast<float*>(buffer_->data()); }
float* HostStaging::exp_avg() const { return values() + values_; }
float* HostStaging::exp_avg_sq() const { return exp_avg() + state_; }

void stage_to_host(const RankState& s) {
  if (s.staging) copy_state(s, /*to_host=*/true);
}

void stage_to_device(const RankState& s) {
  if (s.staging) copy_state(s, /*to_host=*/false);
}

proto::Manifest checkpoint_meta(const proto::TrainConfig& config, const DecoderConfig& model,
                                const TrainLayout& layout, int world_size, int64_t step,
                                int64_t next_sequence, const AdamW& optimizer) {
  proto::Manifest m;
  m.set_step(step);
  proto::SavedLayout* l = m.mutable_layout();
  l->set_world_size(world_size);
  l->set_dp(layout.mesh.dp);
  l->set_tp(layout.mesh.tp);
  l->set_pp(layout.mesh.pp);
  l->set_zero(layout.mesh.dp > 1 ? config.parallel().zero() : 0);
  l->set_virtual_stages(layout.virtual_stages);
  l->set_sequence_parallel(layout.sequence_parallel);
  l->set_pp_schedule(layout.pp_schedule);
  l->set_ep(layout.mesh.ep);
  proto::OptimizerState* o = m.mutable_optimizer();
  o->set_kind("adamw");
  o->set_steps_taken(optimizer.steps_taken());
  o->set_beta1(config.optim().beta1());
  o->set_beta2(config.optim().beta2());
  o->set_eps(config.optim().eps());
  o->set_weight_decay(config.optim().weight_decay());
  proto::LrScheduleState* lr = m.mutable_lr_schedule();
  lr->set_kind(config.schedule().lr_schedule());
  lr->set_lr(config.optim().lr());
  lr->set_warmup_steps(config.schedule().warmup_steps());
  lr->set_min_lr(config.schedule().min_lr());
  lr->set_total_steps(config.training().steps());
  lr->set_position(step);
  proto::DataPosition* d = m.mutable_data();
  d->set_next_sequence(next_sequence);
  d->set_seq_len(config.training().seq_len());
  d->set_train(config.data().train());
  m.mutable_rng()->set_model_seed(config.model().seed());
  m.mutable_rng()->set_sample_seed(config.model().seed());
  *m.mutable_config() = config;
  proto::ModelConfig* mc = m.mutable_model();
  mc->set_n_layer(model.n_layer);
  mc->set_n_head(model.n_head);
  mc->set_n_embd(model.n_embd);
  mc->set_vocab_size(int32_t(model.vocab_size));
  mc->set_max_seq_len(model.max_seq_len);
  m.set_layernorm_eps(model.norm_eps);
  m.set_model_family(model.family);
  m.set_model_config_json(model_family(model.family).to_hf_config(model, DType::kF32).dump());
  return m;
}

DecoderConfig checkpoint_model(const proto::Manifest& m, const fs::path& dir) {
  const std::string where = "checkpoint " + dir.string();
  try {
    if (m.model_family().empty()) {  // saved before model families: GPT-2
      Gpt2Config g;
      g.n_layer = m.model().n_layer();
      g.n_head = m.model().n_head();
      g.n_embd = m.model().n_embd();
      g.vocab_size = m.model().vocab_size();
      g.max_seq_len = m.model().max_seq_len();
      g.layernorm_eps = m.layernorm_eps();
      g.validate();
      return to_decoder(g);
    }
    Json j;
    try {
      j = Json::parse(m.model_config_json());
    } catch (const Json::exception& e) {
      throw InputError(std::string("the saved model config is not JSON: ") + e.what());
    }
    PENG_INPUT_CHECK(j.is_object(), "the saved model config is not a JSON object");
    DecoderConfig c = model_family(m.model_family()).from_hf_config(JsonFields(j, "model config"));
    c.validate();
    return c;
  } catch (const InputError& e) {
    throw InputError(where + ": the saved model is invalid: " + e.what());
  }
}

std::optional<fs::path> resume_path(const proto::CheckpointConfig& c) {
  if (c.resume() == "none") return std::nullopt;
  if (c.resume() == "auto") {
    if (c.dir().empty()) return std::nullopt;
    return ckpt::latest_checkpoint(c.dir());
  }
  return ckpt::resolve_checkpoint(c.resume());
}

void check_resumable(const proto::Manifest& m, const DecoderConfig& model, const fs::path& dir) {
  using Fields = std::vector<std::pair<std::string, std::string>>;
  const Fields saved = describe(checkpoint_model(m, dir)), now = describe(model);
  const auto value = [](const Fields& fields, const std::string& key) -> std::string {
    for (const auto& [k, v] : fields) {
      if (k == key) return v;
    }
    return "(none)";
  };
  for (const Fields* fields : {&saved, &now}) {
    for (const auto& [key, v] : *fields) {
      const std::string a = value(saved, key), b = value(now, key);
      PENG_INPUT_CHECK(a == b, "checkpoint ", dir.string(), " was saved for model.", key, " = ", a,
                       " but this run has ", b);
    }
  }
}

}  // namespace peng
