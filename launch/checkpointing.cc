#include "launch/checkpointing.h"

#include "checkpoint/manifest.h"
#include "checkpoint/store.h"
#include "core/error.h"
#include "parallel/pipeline/schedule.h"

namespace peng {

namespace fs = std::filesystem;

namespace {

// The logical tensor `prefix + p.name` over [begin, end) of p's shard, at `data`.
ckpt::Region region(const std::string& prefix, const Parameter& p, int64_t vocab, int64_t begin,
                    int64_t end, float* data) {
  Shape logical = p.global_shape;
  if (p.name == "wte.weight") logical[0] = vocab;  // the padding rows are not saved
  return {.tensor = prefix + p.name,
          .logical_shape = logical,
          .global_shape = p.global_shape,
          .spec = p.shard,
          .begin = begin,
          .end = end,
          .data = data};
}

// The three regions (values and both moments) of a segment of the optimizer's spans.
void add_segment(const RankState& s, const ParamSegment& seg, std::vector<ckpt::Region>& out,
                 bool values) {
  const Parameter& p = *seg.param;
  const int64_t begin = seg.span.offset - p.offset, end = begin + seg.span.numel;
  if (values) {
    out.push_back(region("model/", p, s.vocab_size, begin, end,
                         s.params->flat_values().data<float>() + seg.span.offset));
  }
  out.push_back(region("optim/exp_avg/", p, s.vocab_size, begin, end,
                       s.optimizer->exp_avg().data<float>() + seg.span.state_offset));
  out.push_back(region("optim/exp_avg_sq/", p, s.vocab_size, begin, end,
                       s.optimizer->exp_avg_sq().data<float>() + seg.span.state_offset));
}

}  // namespace

std::vector<ckpt::Region> save_regions(const RankState& s) {
  std::vector<FlatSpan> spans = s.optim_spans;
  if (!s.sharded_optimizer) {  // replicated over dp: each dp rank writes its share
    const int64_t n = s.params->numel();
    const int64_t lo = n * s.dp_rank / s.dp_size, hi = n * (s.dp_rank + 1) / s.dp_size;
    spans = {{lo, hi - lo, lo}};
  }
  std::vector<ckpt::Region> out;
  for (const ParamSegment& seg : split_at_parameters(*s.params, spans)) {
    if (s.writes(*seg.param)) add_segment(s, seg, out, /*values=*/true);
  }
  return out;
}

std::vector<ckpt::Region> load_regions(const RankState& s) {
  std::vector<ckpt::Region> out;
  for (Parameter& p : s.params->all()) {
    out.push_back(region("model/", p, s.vocab_size, 0, p.value.numel(), p.value.data<float>()));
  }
  for (const ParamSegment& seg : split_at_parameters(*s.params, s.optim_spans)) {
    add_segment(s, seg, out, /*values=*/false);
  }
  return out;
}

proto::Manifest checkpoint_meta(const proto::TrainConfig& config, const Gpt2Config& model,
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
  l->set_pp_schedule(schedule_kind_name(layout.pp_schedule));
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
  m.set_layernorm_eps(model.layernorm_eps);
  return m;
}

Gpt2Config checkpoint_model(const proto::Manifest& m) {
  Gpt2Config c;
  c.n_layer = m.model().n_layer();
  c.n_head = m.model().n_head();
  c.n_embd = m.model().n_embd();
  c.vocab_size = m.model().vocab_size();
  c.max_seq_len = m.model().max_seq_len();
  c.layernorm_eps = m.layernorm_eps();
  return c;
}

std::optional<fs::path> resume_path(const proto::CheckpointConfig& c) {
  if (c.resume() == "none") return std::nullopt;
  if (c.resume() == "auto") {
    if (c.dir().empty()) return std::nullopt;
    return ckpt::latest_checkpoint(c.dir());
  }
  return ckpt::resolve_checkpoint(c.resume());
}

void check_resumable(const proto::Manifest& m, const Gpt2Config& model, const fs::path& dir) {
  const Gpt2Config saved = checkpoint_model(m);
  const auto same = [&](const char* field, int64_t a, int64_t b) {
    PENG_INPUT_CHECK(a == b, "checkpoint ", dir.string(), " was saved for model.", field, " = ", a,
                     " but this run has ", b);
  };
  same("n_layer", saved.n_layer, model.n_layer);
  same("n_head", saved.n_head, model.n_head);
  same("n_embd", saved.n_embd, model.n_embd);
  same("vocab_size", saved.vocab_size, model.vocab_size);
  same("max_seq_len", saved.max_seq_len, model.max_seq_len);
}

}  // namespace peng
