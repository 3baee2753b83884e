#include "launch/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "checkpoint/reader.h"
#include "checkpoint/writer.h"
#include "core/backend.h"
#include "core/data/token_shard.h"
#include "core/tokenizer/tokenizer.h"
#include "launch/checkpointing.h"
#include "launch/config.h"
#include "launch/environment.h"
#include "launch/job_telemetry.h"
#include "launch/layout.h"
#include "launch/model_setup.h"
#include "launch/pipeline_runner.h"
#include "launch/stop_signals.h"
#include "models/gpt2/hf_checkpoint.h"
#include "models/gpt2/sample.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"
#include "parallel/data_parallel/grad_reducer.h"
#include "parallel/mpi/mpi_communicator.h"
#include "parallel/process_mesh.h"
#include "telemetry/progress.h"

namespace peng {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Seconds since the previous lap (or the construction): one phase of a step after another.
class Laps {
 public:
  double lap() {
    const Clock::time_point now = Clock::now();
    const double s = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    return s;
  }

 private:
  Clock::time_point last_ = Clock::now();
};

// Reads micro-batches of this rank's slice of one step's global batch (batch rule: the
// slice starts at sequence `first_seq`) into host tensors.
class BatchReader {
 public:
  BatchReader(const TokenStream& stream, int64_t global_batch, int64_t first_seq, int64_t micro,
              int64_t seq, int64_t vocab)
      : stream_(stream),
        batch_(global_batch),
        first_(first_seq),
        micro_(micro),
        seq_(seq),
        vocab_(vocab),
        x_(Tensor::empty({micro, seq}, DType::kI32)),
        y_(Tensor::empty({micro, seq}, DType::kI32)) {}

  // Step `step` starts at global sequence `sequence` (a resumed run: its data position).
  void set_origin(int64_t step, int64_t sequence) {
    origin_step_ = step;
    origin_seq_ = sequence;
  }
  int64_t batch_start(int64_t step) const { return origin_seq_ + (step - origin_step_) * batch_; }
  void read(int64_t step, int64_t micro_index) {
    stream_.read_batch_at(batch_start(step), first_ + micro_index * micro_, micro_, batch_, seq_,
                          x_.data<int32_t>(), y_.data<int32_t>(), vocab_);
  }
  const Tensor& x() const { return x_; }
  const Tensor& y() const { return y_; }

 private:
  const TokenStream& stream_;
  int64_t batch_, first_, micro_, seq_, vocab_;
  int64_t origin_step_ = 0, origin_seq_ = 0;
  Tensor x_, y_;
};

// Element-wise sum over ranks (the identity without the group).
std::vector<double> sum_over(Communicator* comm, std::vector<double> local) {
  if (!comm) return local;
  Tensor t = Tensor::from_vector<double>(local, {int64_t(local.size())});
  comm->all_reduce(t, ReduceOp::kSum)->wait();
  const double* p = t.data<double>();
  return std::vector<double>(p, p + local.size());
}
double sum_over(Communicator* comm, double local) {
  return sum_over(comm, std::vector<double>{local})[0];
}

// The micro-batches of step `step` for a pipeline runner; adds the reading time to
// `*data_s` when given.
PipelineRunner::MicroBatch micro_batches(BatchReader& reader, int64_t step,
                                         double* data_s = nullptr) {
  return [&reader, step, data_s](int micro) {
    const auto t0 = Clock::now();
    reader.read(step, micro);
    if (data_s) *data_s += seconds_since(t0);
    return std::make_pair(&reader.x(), &reader.y());
  };
}

// Mean loss over `batches` global batches of the validation stream (always the same ones);
// each dp rank evaluates its slice (through the pipeline when there is one: the last stage
// has the losses, summed over `pp`).
double evaluate(Gpt2Model& model, PipelineRunner* runner, BatchReader& reader, int64_t batches,
                int64_t micro_steps, Communicator* dp, Communicator* pp) {
  double sum = 0;
  for (int64_t s = 0; s < batches; ++s) {
    if (runner) {
      sum += runner->evaluate(micro_batches(reader, s));
      continue;
    }
    for (int64_t k = 0; k < micro_steps; ++k) {
      reader.read(s, k);
      sum += model.forward(reader.x(), reader.y());
    }
  }
  const int ranks = dp ? dp->size() : 1;
  return sum_over(dp, sum_over(pp, sum)) / double(batches * micro_steps * ranks);
}

// Every parameter of the model in Hugging Face layout on every rank: each rank's stages
// (gathered over tp), then, under pipeline parallelism, each tensor broadcast from the
// pipeline rank that holds it.
std::map<std::string, Tensor> whole_model_state(Gpt2Model& model, Communicator* pp) {
  std::map<std::string, Tensor> state = model.state();
  if (!pp) return state;
  const Gpt2Config& cfg = model.config();
  const PipelineLayout& pipe = model.pipeline();
  const int per_stage = cfg.n_layer / pipe.stages();
  for (const std::string& name : gpt2_parameter_names(cfg)) {
    int owner = 0;  // wte, wpe: the first stage
    if (name.rfind("ln_f.", 0) == 0) owner = pipe.pp - 1;
    if (name.rfind("h.", 0) == 0) owner = (std::stoi(name.substr(2)) / per_stage) % pipe.pp;
    Tensor t = owner == pipe.rank ? state.at(name) : Tensor::empty(gpt2_parameter_shape(cfg, name));
    pp->broadcast(t, owner)->wait();
    state[name] = t;
  }
  return state;
}

// A text sample; through the pipeline when there is one (every rank draws the same text).
std::string sample_text(Gpt2Model& model, PipelineRunner* runner, const Tokenizer& tok,
                        const proto::TrainConfig& c, int64_t step) {
  std::vector<int32_t> prompt = {int32_t(tok.eot_token().value_or('\n'))};
  const LastLogits last_logits = [&](const Tensor& tokens) {
    if (runner) return runner->last_logits(tokens);
    model.forward(tokens, Tensor());
    return model.logits_row(tokens.dim(1) - 1);
  };
  std::vector<int32_t> ids = sample_tokens(
      last_logits, model.config(), prompt, c.logging().sample_tokens(), c.training().seq_len(),
      c.logging().top_k(), c.model().seed() + uint64_t(step), tok.vocab_size());
  return tok.decode(std::vector<uint32_t>(ids.begin(), ids.end()));
}

// "0.120 TFLOP/s per device in steps | MFU 77.3% | HFU 77.1% | goodput 82.0%"
std::string efficiency_summary(const JobTelemetry& t) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "%.3g TFLOP/s per device in steps | MFU %.1f%% | HFU %.1f%% | goodput %.1f%%",
                t.mfu() * t.peak_flops() / 1e12, 100 * t.mfu(), 100 * t.hfu(), 100 * t.goodput());
  return buf;
}

}  // namespace

TrainReport train(const proto::TrainConfig& config) {
  const auto start = Clock::now();
  validate_train_config(config);
  const LaunchEnv env = detect_launch_env();
  const auto& tc = config.training();
  const auto& lc = config.logging();
  const auto& pc = config.parallel();
  const int64_t B = tc.batch_size(), T = tc.seq_len();
  const Gpt2Config mc = resolve_model_config(config);
  const TrainLayout layout = resolve_layout(config, env.world_size, mc);  // before allocating
  const MeshShape& shape = layout.mesh;
  const int64_t local_batch = layout.local_batch, micro = layout.micro;
  const int64_t micro_steps = layout.micro_steps;
  const bool sp = layout.sequence_parallel;
  const ScheduleKind pp_kind = layout.pp_schedule;
  const int v = layout.virtual_stages;
  std::unique_ptr<ProcessMesh> mesh;
  if (env.world_size > 1) {
    mpi_world().set_timeout(pc.collective_timeout_s());  // the mesh's groups inherit it
    mesh = std::make_unique<ProcessMesh>(mpi_world(), shape);
  }
  Communicator* dp = mesh ? &mesh->dp() : nullptr;
  Communicator* pp = mesh && shape.pp > 1 ? &mesh->pp() : nullptr;
  const int64_t first_seq = mesh ? mesh->dp_rank() * local_batch : 0;
  const bool rank0 = env.rank == 0;
  const proto::CheckpointConfig& cc = config.checkpoint();
  install_stop_handlers();

  Backend& be = cpu_backend();
  const TpGroup tp{shape.tp > 1 ? &mesh->tp() : nullptr, sp};
  const PipelineLayout pipe{
      .pp = shape.pp, .rank = mesh ? mesh->pp_rank() : 0, .virtual_stages = v};
  std::unique_ptr<Gpt2Model> model = build_model(config, mc, be, tp, pipe);
  // Pipeline: the schedule's runner, and the group of the two ranks holding the tied wte.
  std::unique_ptr<PipelineRunner> runner;
  std::unique_ptr<Communicator> embedding_group;
  if (layout.pipelined()) {
    const int64_t rows = sp ? micro * T / shape.tp : micro * T;
    runner = std::make_unique<PipelineRunner>(*model, mesh ? mesh->pp() : mpi_world(), pp_kind,
                                              int(micro_steps), Shape{rows, mc.n_embd});
  }
  if (shape.pp > 1) {
    const bool ends = pipe.first_rank() || pipe.last_rank();
    embedding_group = mesh->pp().split(ends ? 0 : 1, pipe.rank, "embedding");  // collective
    if (!ends) embedding_group.reset();
  }
  TokenStream train_stream(config.data().train());
  BatchReader train_reader(train_stream, B, first_seq, micro, T, mc.vocab_size);
  std::unique_ptr<TokenStream> val_stream;
  std::unique_ptr<BatchReader> val_reader;
  if (!config.data().val().empty()) {
    val_stream = std::make_unique<TokenStream>(config.data().val());
    val_reader = std::make_unique<BatchReader>(*val_stream, B, first_seq, micro, T, mc.vocab_size);
  }
  std::unique_ptr<Tokenizer> tokenizer;
  if (!config.data().tokenizer().empty()) {
    tokenizer = make_tokenizer(config.data().tokenizer());
    PENG_INPUT_CHECK(tokenizer->vocab_size() <= mc.vocab_size, "data.tokenizer has ",
                     tokenizer->vocab_size(), " tokens but model.vocab_size is ", mc.vocab_size);
  } else if (mc.vocab_size <= 256) {
    tokenizer = make_tokenizer("byte");
  }
  PENG_INPUT_CHECK(lc.sample_every() == 0 || tokenizer,
                   "logging.sample_every needs data.tokenizer (byte or a GPT-2 BPE folder)");

  // Data parallelism: gradients reduced in buckets during the last backward pass; with
  // ZeRO 1/2 each rank reduces, clips and updates only its shard, then all-gathers.
  const int zero = dp ? pc.zero() : 0;
  std::unique_ptr<GradReducer> reducer;
  if (dp) {
    reducer = std::make_unique<GradReducer>(
        model->parameters(), *dp, be, int64_t(pc.bucket_mb() * 1e6),
        zero > 0 ? GradReducer::Mode::kReduceScatter : GradReducer::Mode::kAllReduce);
  }
  const AdamWConfig adamw{.beta1 = config.optim().beta1(),
                          .beta2 = config.optim().beta2(),
                          .eps = config.optim().eps(),
                          .weight_decay = config.optim().weight_decay()};
  std::unique_ptr<AdamW> optimizer =
      zero > 0 ? std::make_unique<AdamW>(model->parameters(), be, adamw, reducer->owned(),
                                         reducer->shard_grads().numel())
               : std::make_unique<AdamW>(model->parameters(), be, adamw);
  Tensor& grads = zero > 0 ? reducer->shard_grads() : model->parameters().flat_grads();
  // The gradient norm adds the squares over the ranks that hold disjoint parts of it.
  const std::vector<FlatSpan> grad_spans =
      zero > 0 ? reducer->owned() : std::vector<FlatSpan>{{0, model->parameters().numel(), 0}};
  // Sequence parallelism leaves partial LayerNorm gradients on each tp rank.
  std::vector<ParamSegment> tp_partial;
  for (const ParamSegment& s : split_at_parameters(model->parameters(), grad_spans)) {
    if (s.param->tp_partial_grad) tp_partial.push_back(s);
  }
  // Each element counts once: tp-replicated parameters on tp rank 0, the tied wte on the
  // first pipeline stage.
  std::vector<Communicator*> norm_groups;
  if (tp.comm) norm_groups.push_back(tp.comm);
  if (pp) norm_groups.push_back(pp);
  if (zero > 0) norm_groups.push_back(dp);
  const auto counted = [&](const Parameter& p) {
    if (tp.rank() > 0 && p.shard.replicated()) return false;
    return !(pipe.pp > 1 && pipe.last_rank() && p.name == "wte.weight");
  };
  LrSchedule schedule{.kind = LrSchedule::parse_kind(config.schedule().lr_schedule()),
                      .lr = config.optim().lr(),
                      .warmup = config.schedule().warmup_steps(),
                      .min_lr = config.schedule().min_lr(),
                      .total = tc.steps()};
  // Checkpoints: this rank's share of the state, resuming, and the writer (with its own
  // communicator: an asynchronous save runs collectives on a background thread).
  const RankState state{.params = &model->parameters(),
                        .optimizer = optimizer.get(),
                        .optim_spans = grad_spans,
                        .sharded_optimizer = zero > 0,
                        .dp_rank = mesh ? mesh->dp_rank() : 0,
                        .dp_size = shape.dp,
                        .writes = counted,
                        .vocab_size = mc.vocab_size};
  std::string resumed;
  int64_t start_step = 0;
  if (const auto from = resume_path(cc)) {
    ckpt::CheckpointReader reader(*from);
    const proto::Manifest& m = reader.manifest();
    check_resumable(m, mc, *from);
    reader.read(load_regions(state));
    optimizer->set_steps_taken(m.optimizer().steps_taken());
    start_step = m.step();
    train_reader.set_origin(start_step, m.data().next_sequence());
    const proto::SavedLayout& l = m.layout();
    resumed = detail::concat("resumed from ", from->string(), " at step ", start_step,
                             " (saved under dp ", l.dp(), ", tp ", l.tp(), ", pp ", l.pp(),
                             ", zero ", l.zero(), ")");
  }
  std::unique_ptr<Communicator> ckpt_comm;
  std::unique_ptr<ckpt::Checkpointer> checkpointer;
  if (!cc.dir().empty()) {
    if (env.world_size > 1) ckpt_comm = mpi_world().split(0, env.rank, "checkpoint");
    checkpointer =
        std::make_unique<ckpt::Checkpointer>(cc.dir(), cc.keep_last(), cc.async(), ckpt_comm.get());
  }
  ProgressLine progress(tc.steps(), lc.log_every(), !lc.quiet() && rank0, rank0);
  JobTelemetry telemetry(config, env, env.world_size > 1 ? &mpi_world() : nullptr, be.device(),
                         {.params = gpt2_num_params(mc, false),
                          .n_layer = mc.n_layer,
                          .n_embd = mc.n_embd,
                          .seq_len = T,
                          .attention_fraction = be.attention_work_fraction(T)},
                         B * T, start);  // collective

  TrainReport report;
  report.flops_per_token = telemetry.flops_per_token();
  progress.message(detail::concat(
      "peng: GPT-2 ", mc.n_layer, "L ", mc.n_head, "H ", mc.n_embd, "C vocab ", mc.vocab_size,
      " | ", double(gpt2_num_params(mc, true)) / 1e6, "M params | batch ", B, "x", T, " (micro ",
      micro, ", dp ", shape.dp, ", tp ", shape.tp, sp ? " sp" : "", ", pp ", shape.pp,
      runner ? std::string(" ") + schedule_kind_name(pp_kind) : std::string(),
      v > 1 ? " v" + std::to_string(v) : std::string(), ", zero ", zero, ") | ", tc.steps(),
      " steps | data ", train_stream.describe(), " (", train_stream.size(), " tokens)"));
  for (const std::string& line : telemetry.start_messages()) progress.message(line);
  if (!resumed.empty()) progress.message(resumed);
  if (start_step >= tc.steps()) {
    if (rank0) {
      std::printf(
          "done: the checkpoint is at step %lld of training.steps = %d: nothing to "
          "train (raise --steps to continue)\n",
          static_cast<long long>(start_step), tc.steps());
    }
    return report;
  }

  const double train_start = seconds_since(start);
  const auto loop_start = Clock::now();
  const float grad_scale = float(1.0 / double(B * T));
  int stopped_by = 0;
  telemetry.begin(start_step, cc.dir());
  try {
    for (int64_t step = start_step; step < tc.steps(); ++step) {
      const auto t0 = Clock::now();
      StepBreakdown time;  // exposed_comm_s: waiting for gradient and parameter collectives
      Laps laps;
      model->parameters().zero_grads();
      double loss = 0;  // this rank's share of the global mean
      for (int64_t k = 0; !runner && k < micro_steps; ++k) {
        // Gradients are scaled by 1/(B*T) of the global batch: their sum over micro-batches
        // and dp ranks is the gradient of the global mean loss. Only the last micro-batch
        // communicates, except with ZeRO 2, which reduce-scatters each one into the shard.
        const bool last = k + 1 == micro_steps;
        const bool communicate = reducer && (last || zero == 2);
        if (communicate) reducer->arm(/*accumulate=*/zero == 2 && k > 0);
        laps.lap();
        train_reader.read(step, k);
        time.data_s += laps.lap();
        loss += model->forward(train_reader.x(), train_reader.y()) / double(micro_steps * shape.dp);
        time.forward_s += laps.lap();
        model->backward(grad_scale);
        time.backward_s += laps.lap();
        if (communicate) {
          reducer->wait();
          time.exposed_comm_s += laps.lap();
        }
        if (zero == 2 && !last) model->parameters().zero_grads();
      }
      if (runner) {  // the pipeline's schedule, then its tied embedding, then dp (no overlap)
        laps.lap();
        loss = runner->train(micro_batches(train_reader, step, &time.data_s), grad_scale) /
               double(micro_steps * shape.dp);
        time.forward_s = runner->forward_seconds();
        time.backward_s = runner->backward_seconds();
        time.pp_bubble_s = runner->bubble() * laps.lap();
        if (embedding_group) {
          embedding_group->all_reduce(model->parameters().get("wte.weight").grad, ReduceOp::kSum)
              ->wait();
        }
        if (reducer) {
          reducer->arm();
          reducer->wait();
        }
        time.exposed_comm_s += laps.lap();
      }
      for (const ParamSegment& s : tp_partial) {
        Tensor g = grads.flat_view(s.span.state_offset, {s.span.numel});
        tp.all_reduce_sum(g);
      }
      // One pipeline reduction: the loss (held by the last stage) and the ranks' bubbles.
      const std::vector<double> pp_sums = sum_over(pp, {loss, runner ? runner->bubble() : 0.0});
      loss = sum_over(dp, pp_sums[0]);
      const double bubble = pp_sums[1] / shape.pp;  // the pipeline ranks' mean waiting share
      time.exposed_comm_s += laps.lap();
      PENG_CHECK(std::isfinite(loss), "loss is ", loss, " at step ", step,
                 ": training diverged (lower optim.lr or check the data)");
      laps.lap();
      const double norm =
          sharded_grad_norm(grads, grad_spans, model->parameters(), be, counted, norm_groups);
      clip_grad_norm(grads, be, norm, config.optim().grad_clip());
      const float lr = schedule.at(step);
      optimizer->step(lr, grads);
      time.optimizer_s = laps.lap();
      if (zero > 0) reducer->all_gather_values();
      // The tied wte's two copies got the same gradient, but summed over dp in buckets laid
      // out differently on the two stages: keep them bit-identical.
      if (embedding_group) {
        embedding_group->broadcast(model->parameters().get("wte.weight").value, 0)->wait();
      }
      time.exposed_comm_s += laps.lap();
      const double dt = seconds_since(t0);

      StepRecord r{.step = step,
                   .loss = loss,
                   .grad_norm = norm,
                   .lr = lr,
                   .tokens_per_s = double(B * T) / dt,
                   .step_time_s = dt};
      report.steps.push_back(r);
      report.tokens += B * T;
      telemetry.on_step({.step = step,
                         .loss = loss,
                         .grad_norm = norm,
                         .lr = lr,
                         .step_time_s = dt,
                         .pp_bubble = bubble,
                         .breakdown = time});
      const double elapsed = seconds_since(loop_start);
      progress.step(step, loss, double(report.tokens) / elapsed, elapsed);

      const bool last = step + 1 == tc.steps();
      const auto e0 = Clock::now();
      if (val_reader && ((lc.val_every() > 0 && (step + 1) % lc.val_every() == 0) || last)) {
        const double v =
            evaluate(*model, runner.get(), *val_reader, lc.val_batches(), micro_steps, dp, pp);
        report.val_losses.emplace_back(step, v);
        telemetry.on_validation(step, v);
        progress.message(detail::concat("step ", step + 1, " | val loss ", v));
      }
      // Every rank samples (only rank 0 prints): a rank-0-only pause longer than the
      // collective timeout would look like a hang to the others.
      if (lc.sample_every() > 0 && ((step + 1) % lc.sample_every() == 0 || last)) {
        progress.message("sample at step " + std::to_string(step + 1) + ":\n" +
                         sample_text(*model, runner.get(), *tokenizer, config, step) + "\n---");
      }
      telemetry.add_evaluation_time(seconds_since(e0));
      stopped_by = telemetry.end_of_step(stop_signal());  // collective
      if (checkpointer &&
          ((cc.every() > 0 && (step + 1) % cc.every() == 0) || last || stopped_by)) {
        const double stall = checkpointer->save(
            save_regions(state), checkpoint_meta(config, mc, layout, env.world_size, step + 1,
                                                 train_reader.batch_start(step + 1), *optimizer));
        report.checkpoint_stall_s += stall;
        telemetry.on_checkpoint(step, step + 1, stall);
        progress.message(
            cc.async() ? detail::concat("checkpoint step ", step + 1, ": training resumed after ",
                                        stall, " s; writing in the background")
                       : detail::concat("checkpoint ", checkpointer->last_committed().string(),
                                        " saved (", stall, " s)"));
      }
      if (stopped_by) {
        std::string where = "no --checkpoint-dir: nothing saved";
        if (checkpointer) {
          checkpointer->wait();
          where = "checkpoint saved to " + checkpointer->last_committed().string();
        }
        progress.message(detail::concat("received ", signal_name(stopped_by),
                                        ": stopped after step ", step + 1, "; ", where,
                                        "; exiting"));
        break;
      }
    }
    if (checkpointer) checkpointer->wait();
    progress.finish();
    report.seconds = seconds_since(loop_start);
    if (!lc.export_to().empty()) {
      const auto state = whole_model_state(*model, pp);  // collective over tp and pp
      if (rank0) save_hf_gpt2(lc.export_to(), mc, state);
    }
    telemetry.finish(stopped_by ? std::string("stopped: ") + signal_name(stopped_by)
                                : std::string("completed"));  // collective
  } catch (const std::exception& e) {
    telemetry.fail(e.what());
    throw;
  }

  const double tps = double(report.tokens) / report.seconds;
  std::string summary =
      detail::concat("done: ", report.steps.size(), " steps, ", report.tokens, " tokens in ",
                     format_duration(report.seconds), " (start-up ", format_duration(train_start),
                     ") | ", int64_t(tps), " tok/s | ", efficiency_summary(telemetry), " | loss ",
                     report.steps.front().loss, " -> ", report.steps.back().loss);
  if (!resumed.empty()) summary += detail::concat(" | from step ", start_step);
  if (checkpointer) {
    summary += detail::concat(" | checkpoint ", checkpointer->last_committed().string(), " (stall ",
                              report.checkpoint_stall_s, " s)");
  }
  if (!report.val_losses.empty())
    summary += detail::concat(" | val loss ", report.val_losses.back().second);
  if (!lc.export_to().empty()) summary += " | model written to " + lc.export_to();
  if (rank0) std::printf("%s\n", summary.c_str());
  return report;
}

}  // namespace peng
