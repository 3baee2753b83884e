#include "peng/launch/trainer.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "peng/checkpoint/reader.h"
#include "peng/checkpoint/writer.h"
#include "peng/core/backend.h"
#include "peng/core/cuda/memory.h"
#include "peng/core/tokenizer/tokenizer.h"
#include "peng/launch/batch_reader.h"
#include "peng/launch/checkpointing.h"
#include "peng/launch/config.h"
#include "peng/launch/device.h"
#include "peng/launch/environment.h"
#include "peng/launch/gradient_sync.h"
#include "peng/launch/job_telemetry.h"
#include "peng/launch/layout.h"
#include "peng/launch/memory_plan.h"
#include "peng/launch/model_setup.h"
#include "peng/launch/pipeline_runner.h"
#include "peng/launch/routing_metrics.h"
#include "peng/launch/stop_signals.h"
#include "peng/models/sample.h"
#include "peng/optim/adamw.h"
#include "peng/optim/grad_clip.h"
#include "peng/optim/lr_schedule.h"
#include "peng/parallel/data_parallel/grad_reducer.h"
#include "peng/parallel/data_parallel/param_shards.h"
#include "peng/parallel/make_communicator.h"
#include "peng/parallel/mpi/mpi_communicator.h"
#include "peng/parallel/process_mesh.h"
#include "peng/parallel/staged_communicator.h"
#include "peng/telemetry/phase_timer.h"
#include "peng/telemetry/progress.h"

namespace peng {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

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

// The micro-batches of step `step` for a pipeline runner; with a timer, reading them is a
// phase whose time goes to `*data_s` (the time before it to `*other_s`).
PipelineRunner::MicroBatch micro_batches(BatchReader& reader, int64_t step,
                                         PhaseTimer* timer = nullptr, double* data_s = nullptr,
                                         double* other_s = nullptr) {
  return [&reader, step, timer, data_s, other_s](int micro) {
    if (timer) timer->lap(other_s);
    reader.read(step, micro);
    if (timer) timer->lap(data_s);
    return std::make_pair(&reader.x(), &reader.y());
  };
}

// "0.120 TFLOP/s per device in steps | MFU 77.3% | HFU 77.1% | goodput 82.0%"
std::string efficiency_summary(const JobTelemetry& t) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "%.3g TFLOP/s per device in steps | MFU %.1f%% | HFU %.1f%% | goodput %.1f%%",
                t.mfu() * t.peak_flops() / 1e12, 100 * t.mfu(), 100 * t.hfu(), 100 * t.goodput());
  return buf;
}

// "llama 4L 256C 4H/2KV vocab 4096 | 12.3M params"
std::string model_line(const DecoderConfig& a) {
  std::ostringstream os;
  os << a.family << " " << a.n_layer << "L " << a.n_head << "H";
  if (a.n_kv_head != a.n_head) os << "/" << a.n_kv_head << "KV";
  os << " " << a.n_embd << "C vocab " << a.vocab_size << " | " << double(count_parameters(a)) / 1e6
     << "M params";
  return os.str();
}

}  // namespace

// ---- the components, in build order ----

struct Trainer::Parts {
  // What the job is.
  proto::TrainConfig config;
  Clock::time_point start = Clock::now();
  LaunchEnv env;
  DecoderConfig arch;
  TrainLayout layout;
  bool rank0 = false;
  // Where it runs (null with one rank): two meshes of one shape. `mesh`, over the tensor
  // communicator (parallel.comm: NCCL, or the staged path), carries every tensor; `control`,
  // over MPI, the host scalars (loss and norm sums, routing statistics, start-up lines).
  std::unique_ptr<Communicator> tensor_world;
  std::unique_ptr<ProcessMesh> mesh, control;
  Communicator *dp = nullptr, *pp = nullptr;  // the tensor mesh's (null: not split that way)
  Communicator *control_dp = nullptr, *control_pp = nullptr;  // the control mesh's
  TpGroup tp;
  PipelineLayout pipe;
  // A Mixture-of-Experts model's groups: expert parallelism (from the mesh) and the ranks its
  // routing statistics add up over (ExpertGroup).
  std::unique_ptr<Communicator> routing;
  ExpertGroup experts;
  RecomputePolicy recompute;  // what each layer recomputes in backward
  // The device this rank computes on (training.device) and its backend; the phases of a
  // step are timed on it.
  Device device;
  Backend* be = nullptr;
  std::unique_ptr<PhaseTimer> timer;
  // Per step, on the device: [0] the sum of this rank's per-position losses, [1] the sum of
  // squares of its counted gradient elements, [2] those of its experts' weights (summed over
  // the ep group too when the gradient is not sharded). Read together, once per step.
  Tensor step_sums, loss_sum, grad_squares, expert_squares;
  // The model and the pipeline schedule's runner.
  std::unique_ptr<CausalLM> model;
  std::unique_ptr<PipelineRunner> runner;
  // Data.
  TrainerHooks hooks;  // the program's callbacks and data (launch/trainer.h)
  std::shared_ptr<const TokenSource> train_stream, val_stream;
  bool stop_requested = false;  // the step callback's answer for the last step
  std::unique_ptr<BatchReader> train_reader, val_reader;
  std::unique_ptr<Tokenizer> tokenizer;
  // Gradients and the update: dp reduction in buckets (ZeRO 1/2: reduce-scatter into this
  // rank's shard; ZeRO 2: per layer, no flat gradient buffer; ZeRO 3: the values sharded too
  // and gathered per layer on their own communicator), tied copies and partial sums, AdamW
  // on this rank's spans.
  int zero = 0;
  std::unique_ptr<GradReducer> reducer;
  std::vector<std::unique_ptr<Communicator>> gather_comms;  // ZeRO 3: dp's, expert dp's
  std::unique_ptr<ParamShards> shards;
  std::unique_ptr<AdamW> optimizer;
  std::vector<FlatSpan> grad_spans;
  std::unique_ptr<GradientSync> sync;
  std::vector<Communicator*> norm_groups;                     // the norm's squares add over these
  std::vector<Communicator*> expert_norm_groups;              // the experts' squares over these
  std::vector<ParamSegment> counted_others, counted_experts;  // sync->counted(), split
  LrSchedule schedule;
  // Checkpoints (their own communicator: an async save runs collectives on a thread).
  RankState state;
  std::unique_ptr<HostStaging> staging;  // the state's host copy when it is on a GPU
  std::unique_ptr<Communicator> ckpt_comm;
  std::unique_ptr<ckpt::Checkpointer> checkpointer;
  // Output.
  std::unique_ptr<ProgressLine> progress;
  std::unique_ptr<JobTelemetry> telemetry;
  // Progress of the run.
  std::map<int, double> imbalance;  // MoE layer -> sum over steps of max/mean tokens per expert
  int64_t activation_bytes = 0;     // the most activations kept at once (measured)
  int64_t predicted_state = 0, predicted_activations = 0;  // this rank's (memory_plan.h)
  int64_t moe_steps = 0;
  int64_t start_step = 0;
  std::string resumed;
  TrainReport report;
  double train_start = 0;
  Clock::time_point loop_start;

  Tensor& grads() { return zero > 0 ? reducer->shard_grads() : model->parameters().flat_grads(); }
  int64_t micro_steps() const { return layout.micro_steps; }
  // Positions of one micro-batch: the losses of a step add up over micro_steps() of them.
  int64_t micro_positions() const { return layout.micro * config.training().seq_len(); }
};

struct Trainer::StepTimes {
  StepBreakdown time;
  double pipeline_other_s = 0;  // pipeline schedule time outside forward, backward and data
};

namespace {

using ParamGathers = std::map<const Communicator*, Communicator*>;

// Whether the model is a Mixture of Experts with a balance loss (--aux-loss-alpha on a dense
// model changes nothing).
bool has_balance_loss(const Trainer::Parts& p) {
  return p.arch.moe.enabled() && p.arch.moe.aux_alpha > 0;
}

// The config a checkpoint records: what this run really used, with the program's data and
// learning-rate callback (TrainerHooks) named where they replaced the config's.
proto::TrainConfig recorded_config(const Trainer::Parts& p) {
  proto::TrainConfig c = p.config;
  if (p.hooks.train_data)
    c.mutable_data()->set_train("(program's source) " + p.train_stream->describe());
  if (p.hooks.lr) c.mutable_schedule()->set_lr_schedule("(program's callback)");
  return c;
}

// The learning rate of `step`: the program's (TrainerHooks::lr) or the config's schedule.
float learning_rate(const Trainer::Parts& p, int64_t step) {
  if (!p.hooks.lr) return p.schedule.at(step);
  const double lr = p.hooks.lr(step);
  PENG_INPUT_CHECK(std::isfinite(lr) && lr >= 0, "the learning-rate callback returned ", lr,
                   " at step ", step, " (must be finite and >= 0)");
  return float(lr);
}

// Whether a MoE model's balance loss is taken per micro-batch: a pipeline schedule that
// interleaves forwards and backwards (1F1B, interleaved) over several micro-batches cannot
// know the global batch's routing at its first backward. GPipe and unpipelined
// micro-batching (forwards first) keep the global batch's.
bool micro_batch_balance(const Trainer::Parts& p) {
  return has_balance_loss(p) && p.layout.pipelined() && p.layout.micro_steps > 1 &&
         !schedule_spec(p.layout.pp_schedule).forwards_first;
}

// A Mixture-of-Experts model's groups (collective): the ep group of the mesh, and the ranks
// sharing one global micro-batch's routing statistics: dp, and tp too under sequence
// parallelism (each tp rank routes its own rows). Their own communicator, apart from dp's
// gradient buckets.
void build_expert_groups(Trainer::Parts& p) {
  PENG_INPUT_CHECK(!p.arch.moe.enabled() || p.device.is_cpu(),
                   "training.device = ", describe_device(p.device),
                   ": Mixture-of-Experts layers run on the CPU backend only for now (their CUDA "
                   "kernels are not written yet); use --device cpu");
  if (!p.arch.moe.enabled() || !p.mesh) return;
  // The statistics are host values: on the control mesh.
  ProcessMesh& c = *p.control;
  if (p.layout.sequence_parallel) {
    p.routing = c.world().split(c.pp_rank(), c.world().rank(), "routing");
  } else {
    p.routing = c.dp().split(0, c.dp_rank(), "routing");
  }
  p.experts = {.ep = p.mesh->ep(), .routing = p.routing.get()};
}

// Layout, mesh, backend and model.
void build_model(Trainer::Parts& p) {
  const auto& pc = p.config.parallel();
  p.arch = resolve_model_config(p.config);
  p.layout = resolve_layout(p.config, p.env.world_size, p.arch);  // before allocating
  const MeshShape& shape = p.layout.mesh;
  // An explicit --comm nccl builds the groups even for one rank (each of size 1), so one GPU
  // runs the NCCL path end to end.
  if (p.env.world_size > 1 || pc.comm() == "nccl") {
    mpi_world().set_timeout(pc.collective_timeout_s());  // the meshes' MPI groups inherit it
    p.control = std::make_unique<ProcessMesh>(mpi_world(), shape, "-control");
    p.tensor_world =
        make_device_communicator(pc.comm(), mpi_world(), p.device, pc.collective_timeout_s());
    p.mesh = std::make_unique<ProcessMesh>(*p.tensor_world, shape);
  } else {
    check_comm_setting(pc.comm(), p.device);
  }
  p.dp = p.mesh ? &p.mesh->dp() : nullptr;
  p.pp = p.mesh && shape.pp > 1 ? &p.mesh->pp() : nullptr;
  p.control_dp = p.control ? &p.control->dp() : nullptr;
  p.control_pp = p.control && shape.pp > 1 ? &p.control->pp() : nullptr;
  p.be = &backend_for(p.device);
  p.timer = std::make_unique<PhaseTimer>(p.device);
  p.step_sums = Tensor::zeros({3}, DType::kF64, p.device);
  p.loss_sum = p.step_sums.flat_view(0, {1});
  p.grad_squares = p.step_sums.flat_view(1, {1});
  p.expert_squares = p.step_sums.flat_view(2, {1});
  p.tp = {shape.tp > 1 ? &p.mesh->tp() : nullptr, p.layout.sequence_parallel};
  p.pipe = {.pp = shape.pp,
            .rank = p.mesh ? p.mesh->pp_rank() : 0,
            .virtual_stages = p.layout.virtual_stages,
            .split = p.layout.split};
  build_expert_groups(p);
  p.model = initial_model(p.config, p.arch, *p.be, p.tp, p.pipe, p.experts);
  p.recompute = recompute_policy(p.config.training());
  p.model->set_recompute(p.recompute);
  if (micro_batch_balance(p)) p.model->set_balance_scope(BalanceScope::kMicroBatch);
  if (p.layout.pipelined()) {
    const int64_t T = p.config.training().seq_len();
    const Shape boundary{p.model->boundary_rows(p.layout.micro * T), p.arch.n_embd};
    p.runner =
        std::make_unique<PipelineRunner>(*p.model, p.mesh ? p.mesh->pp() : mpi_world(),
                                         p.layout.schedule, int(p.layout.micro_steps), boundary);
  }
}

// Training and validation streams, and the tokenizer of the samples.
void build_data(Trainer::Parts& p) {
  const auto& dc = p.config.data();
  const int64_t B = p.config.training().batch_size(), T = p.config.training().seq_len();
  const int64_t first_seq = p.mesh ? p.mesh->dp_rank() * p.layout.local_batch : 0;
  const int64_t V = p.arch.vocab_size;
  p.train_stream =
      p.hooks.train_data ? p.hooks.train_data : std::make_shared<const TokenStream>(dc.train());
  p.train_reader =
      std::make_unique<BatchReader>(*p.train_stream, B, first_seq, p.layout.micro, T, V, p.device);
  if (!dc.val().empty()) {
    p.val_stream = std::make_shared<const TokenStream>(dc.val());
    p.val_reader =
        std::make_unique<BatchReader>(*p.val_stream, B, first_seq, p.layout.micro, T, V, p.device);
  }
  if (!dc.tokenizer().empty()) {
    p.tokenizer = make_tokenizer(dc.tokenizer());
    PENG_INPUT_CHECK(p.tokenizer->vocab_size() <= V, "data.tokenizer has ",
                     p.tokenizer->vocab_size(), " tokens but model.vocab_size is ", V);
  } else if (V <= 256) {
    p.tokenizer = make_tokenizer("byte");
  }
  PENG_INPUT_CHECK(p.config.logging().sample_every() == 0 || p.tokenizer,
                   "logging.sample_every needs data.tokenizer (byte or a tokenizer folder)");
}

// ZeRO 2: per-layer gradients, no flat gradient buffer. ZeRO 3: the values too; from here on
// this rank keeps only its chunks of them, gathered over each reduction group's own
// communicator (collective: splits dp and the expert-data-parallel group).
void build_param_shards(Trainer::Parts& p) {
  ParameterSet& params = p.model->parameters();
  if (p.zero == 2) {
    p.shards = std::make_unique<ParamShards>(params, *p.reducer, ParamGathers{});
    return;
  }
  ParamGathers gathers;
  for (Communicator* group : {p.dp, p.mesh->expert_dp()}) {
    if (!group) continue;
    p.gather_comms.push_back(group->split(0, group->rank(), group->name() + "-gather"));
    gathers[group] = p.gather_comms.back().get();
  }
  const std::set<int> keep = p.config.parallel().zero3_keep_embeddings()
                                 ? std::set<int>{-1, p.arch.n_layer}
                                 : std::set<int>{};
  p.shards = std::make_unique<ParamShards>(params, *p.reducer, gathers, keep);
  p.optimizer->set_values(&p.shards->values());
}

// The dp reducer, the optimizer over this rank's spans, and what makes gradients whole.
void build_optimizer(Trainer::Parts& p) {
  const auto& pc = p.config.parallel();
  const auto& oc = p.config.optim();
  ParameterSet& params = p.model->parameters();
  p.zero = p.dp ? pc.zero() : 0;
  // ZeRO 2 and 3 reduce per layer (their gradients live per layer: ParamShards).
  const std::vector<FlatSpan> units = p.zero >= 2 ? layer_units(params) : std::vector<FlatSpan>{};
  if (p.dp) {
    p.reducer = std::make_unique<GradReducer>(
        params, *p.dp, *p.be,
        GradReducer::Options{
            .bucket_bytes = int64_t(pc.bucket_mb() * 1e6),
            .mode = p.zero > 0 ? GradReducer::Mode::kReduceScatter : GradReducer::Mode::kAllReduce,
            .expert_dp = p.mesh->expert_dp(),
            .units = p.zero >= 2 ? &units : nullptr,
            .reduce_dtype = grad_reduce_setting(p.config) == "bf16" ? DType::kBF16 : DType::kF32});
  }
  const AdamWConfig adamw{
      .beta1 = oc.beta1(), .beta2 = oc.beta2(), .eps = oc.eps(), .weight_decay = oc.weight_decay()};
  p.optimizer = p.zero > 0 ? std::make_unique<AdamW>(params, *p.be, adamw, p.reducer->owned(),
                                                     p.reducer->shard_grads().numel())
                           : std::make_unique<AdamW>(params, *p.be, adamw);
  p.grad_spans = p.zero > 0 ? p.reducer->owned() : std::vector<FlatSpan>{{0, params.numel(), 0}};
  p.sync = std::make_unique<GradientSync>(params, tie_groups(parameter_table(p.arch)), p.tp.comm,
                                          p.pp, p.grad_spans);
  // The norm's squares are host scalars: summed over the control mesh's groups.
  if (p.tp.comm) p.norm_groups.push_back(&p.control->tp());
  if (p.pp) p.norm_groups.push_back(p.control_pp);
  if (p.zero > 0) p.norm_groups.push_back(p.control_dp);
  p.expert_norm_groups = p.norm_groups;  // unsharded: each ep rank counts its own experts
  if (p.zero == 0 && p.experts.ep) p.expert_norm_groups.push_back(p.control->ep());
  for (const ParamSegment& s : p.sync->counted()) {
    (s.param->expert_parallel ? p.counted_experts : p.counted_others).push_back(s);
  }
  p.schedule = {.kind = LrSchedule::parse_kind(p.config.schedule().lr_schedule()),
                .lr = oc.lr(),
                .warmup = p.config.schedule().warmup_steps(),
                .min_lr = p.config.schedule().min_lr(),
                .total = p.config.training().steps()};
  if (p.zero >= 2) build_param_shards(p);
}

// This rank's share of the checkpointed state, and the checkpoint writer.
void build_checkpoints(Trainer::Parts& p) {
  const proto::CheckpointConfig& cc = p.config.checkpoint();
  p.state = {.params = &p.model->parameters(),
             .optimizer = p.optimizer.get(),
             .optim_spans = p.grad_spans,
             .sharded_optimizer = p.zero > 0,
             .dp_rank = p.mesh ? p.mesh->dp_rank() : 0,
             .dp_size = p.layout.mesh.dp,
             .expert_dp_rank = p.mesh ? p.mesh->dp_rank() / p.layout.mesh.ep : 0,
             .expert_dp_size = p.layout.mesh.dp / p.layout.mesh.ep,
             .tp_rank = p.tp.rank(),
             .value_shard = p.zero == 3 ? &p.shards->values() : nullptr};
  if (cc.dir().empty()) return;
  if (p.env.world_size > 1) p.ckpt_comm = mpi_world().split(0, p.env.rank, "checkpoint");
  p.checkpointer =
      std::make_unique<ckpt::Checkpointer>(cc.dir(), cc.keep_last(), cc.async(), p.ckpt_comm.get(),
                                           FileOptions{.direct = cc.direct_io() == "auto"});
}

// The training state's bytes as allocated on this rank: values, gradients (flat and the
// reduced shard), AdamW's moments.
int64_t allocated_state_bytes(Trainer::Parts& p) {
  ParameterSet& params = p.model->parameters();
  int64_t bytes =
      int64_t(params.flat_values().storage_bytes() + params.flat_grads().storage_bytes());
  if (p.zero == 3) bytes += int64_t(p.shards->values().storage_bytes());
  if (p.zero > 0) bytes += int64_t(p.reducer->shard_grads().storage_bytes());
  return bytes + int64_t(p.optimizer->exp_avg().storage_bytes() +
                         p.optimizer->exp_avg_sq().storage_bytes());
}

std::string mib(int64_t bytes) {
  std::ostringstream s;
  s.precision(1);
  s << std::fixed << double(bytes) / double(1 << 20) << " MiB";
  return s.str();
}

// This rank's predicted memory (launch/memory_plan.h): the state under its ZeRO stage, and
// the activations of one micro-batch (its largest chunk's) and how many are in flight.
struct MemoryPrediction {
  StateBytes state;
  int64_t chunk = 0, in_flight = 1;
};

MemoryPrediction predict_memory(const Trainer::Parts& p) {
  const TrainLayout& l = p.layout;
  MemoryPrediction m{.state = state_bytes(p.model->parameters().numel(), l.mesh.dp, p.zero)};
  const ActivationShape shape{.batch = l.micro,
                              .seq = p.config.training().seq_len(),
                              .tp = l.mesh.tp,
                              .sequence_parallel = l.sequence_parallel};
  const StageSplit split = p.pipe.layers(p.arch.n_layer);
  for (int c = 0; c < p.pipe.virtual_stages; ++c) {
    const int stage = c * p.pipe.pp + p.pipe.rank;
    m.chunk =
        std::max(m.chunk, chunk_activation_bytes(p.arch, p.pipe.first_layer(stage, p.arch.n_layer),
                                                 split[size_t(stage)], shape, p.recompute,
                                                 stage == 0, stage + 1 == p.pipe.stages()));
  }
  const bool forwards_first = !p.runner && l.micro_steps > 1 && has_balance_loss(p);
  m.in_flight = p.runner         ? in_flight_chunks(l.schedule, p.pipe.rank)
                : forwards_first ? l.micro_steps
                                 : 1;
  return m;
}

std::string memory_text(const MemoryPrediction& m) {
  const StateBytes& s = m.state;
  return detail::concat("values ", mib(s.values), ", gradients ", mib(s.grads), ", optimizer ",
                        mib(s.optimizer), ", activations ", mib(m.chunk * m.in_flight), " (",
                        mib(m.chunk), " per micro-batch x ", m.in_flight, " in flight)");
}

// The start-up lines of the predicted memory per rank: one, or under pipeline parallelism one
// per pipeline rank (their stages differ; dp and tp ranks hold alike). Collective over pp.
std::vector<std::string> memory_lines(Trainer::Parts& p) {
  const MemoryPrediction mine = predict_memory(p);
  p.predicted_state = mine.state.total();
  p.predicted_activations = mine.chunk * mine.in_flight;
  if (!p.pp) return {"memory per rank (predicted): " + memory_text(mine)};
  const int n = p.control_pp->size();
  Tensor local = Tensor::from_vector<double>(
      {double(mine.state.values), double(mine.state.grads), double(mine.state.optimizer),
       double(mine.chunk), double(mine.in_flight)},
      {5});
  Tensor all = Tensor::empty({5 * n}, DType::kF64);
  p.control_pp->all_gather(local, all)->wait();
  std::vector<std::string> lines;
  for (int r = 0; r < n; ++r) {
    const double* v = all.data<double>() + 5 * r;
    const MemoryPrediction m{
        .state = {.values = int64_t(v[0]), .grads = int64_t(v[1]), .optimizer = int64_t(v[2])},
        .chunk = int64_t(v[3]),
        .in_flight = int64_t(v[4])};
    lines.push_back(
        detail::concat("memory per rank (predicted), pipeline rank ", r, ": ", memory_text(m)));
  }
  return lines;
}

// " | tensors over nccl" and the like for the device line (nothing with one rank).
std::string tensors_text(const Trainer::Parts& p) {
  if (!p.tensor_world) return "";
  if (!dynamic_cast<const StagedCommunicator*>(p.tensor_world.get())) return " | tensors over nccl";
  return p.device.is_cpu() ? " | tensors over MPI"
                           : " | tensors over MPI, staged through host memory (--comm staged)";
}

// The progress line and every metrics sink; prints the start lines.
void build_telemetry(Trainer::Parts& p) {
  const auto& tc = p.config.training();
  const auto& lc = p.config.logging();
  const int64_t B = tc.batch_size(), T = tc.seq_len();
  p.progress =
      std::make_unique<ProgressLine>(tc.steps(), lc.log_every(), !lc.quiet() && p.rank0, p.rank0);
  p.telemetry = std::make_unique<JobTelemetry>(
      p.config, p.env, p.env.world_size > 1 ? &mpi_world() : nullptr, p.be->device(),
      flops_shape(p.arch, T, p.be->attention_work_fraction(T), p.recompute,
                  p.pipe.layers(p.arch.n_layer)),
      B * T,
      p.start);  // collective
  p.report.flops_per_token = p.telemetry->flops_per_token();
  const TrainLayout& l = p.layout;
  p.progress->message(detail::concat(
      "peng: ", model_line(p.arch), " | batch ", B, "x", T, " (micro ", l.micro, ", dp ", l.mesh.dp,
      ", tp ", l.mesh.tp, l.sequence_parallel ? " sp" : "", ", pp ", l.mesh.pp,
      p.runner ? std::string(" ") + l.pp_schedule : std::string(),
      l.virtual_stages > 1 ? " v" + std::to_string(l.virtual_stages) : std::string(), ", zero ",
      p.zero,
      p.reducer && grad_reduce_setting(p.config) == "bf16" ? ", gradients reduced in bf16" : "",
      ") | ", tc.steps(), " steps | data ", p.train_stream->describe(), " (",
      p.train_stream->size(), " tokens)"));
  if (p.runner) p.progress->message(describe_stages(l, p.arch, T));
  p.progress->message(detail::concat(
      "device: ", describe_device(p.device), " | precision ", precision_setting(p.config),
      p.device.is_cuda() ? " (exact: fp32, TF32 off)" : "", tensors_text(p)));
  for (const std::string& line : p.telemetry->start_messages()) p.progress->message(line);
  const int zero = p.config.parallel().zero();
  if (zero > 0 && l.mesh.dp == 1 && p.rank0) {
    std::fprintf(stderr,
                 "warning: parallel.zero = %d with dp 1 shards nothing (every rank keeps the "
                 "whole state); ZeRO needs dp > 1\n",
                 zero);
  }
  if (p.recompute.any()) p.progress->message("recompute: " + describe(p.recompute));
  for (const std::string& line : memory_lines(p)) p.progress->message(line);
  if (p.arch.moe.enabled()) {
    p.progress->message(detail::concat(
        "experts: ", p.arch.moe.experts, " per MoE layer, ", p.arch.moe.topk, " per token, ep ",
        l.mesh.ep, " (", p.arch.moe.experts / l.mesh.ep, " per rank) | balance loss ",
        p.arch.moe.aux_alpha,
        micro_batch_balance(p) ? " over each micro-batch (the schedule interleaves "
                                 "forwards and backwards; --pp-schedule gpipe keeps the global "
                                 "batch's)"
                               : " over the global batch",
        " | bias update speed ", p.arch.moe.bias_update_speed));
  }
}

// Mean loss over `batches` global batches of the validation stream (always the same ones);
// each dp rank evaluates its slice (through the pipeline when there is one: the last stage
// has the losses, summed over pp). The losses add up on the device and are read once.
double evaluate(Trainer::Parts& p, int64_t batches) {
  Tensor acc = Tensor::zeros({1}, DType::kF64, p.device);
  for (int64_t s = 0; s < batches; ++s) {
    if (p.runner) {
      p.runner->evaluate(micro_batches(*p.val_reader, s), &acc);
      continue;
    }
    for (int64_t k = 0; k < p.micro_steps(); ++k) {
      p.val_reader->read(s, k);
      p.model->forward_sum_into(p.val_reader->x(), p.val_reader->y(), acc);
    }
  }
  const double sum = acc.to(Device::cpu()).data<double>()[0] / double(p.micro_positions());
  const int ranks = p.dp ? p.dp->size() : 1;
  return sum_over(p.control_dp, sum_over(p.control_pp, sum)) /
         double(batches * p.micro_steps() * ranks);
}

// A text sample; through the pipeline when there is one (every rank draws the same text).
std::string sample_text(Trainer::Parts& p, int64_t step) {
  const auto& lc = p.config.logging();
  std::vector<int32_t> prompt = {int32_t(p.tokenizer->eot_token().value_or('\n'))};
  const LastLogits last_logits = [&](const Tensor& tokens) {
    if (p.runner) return p.runner->last_logits(tokens);
    p.model->forward(tokens, Tensor());
    return p.model->logits_row(tokens.dim(1) - 1);
  };
  std::vector<int32_t> ids = sample_tokens(
      last_logits, p.arch, prompt, lc.sample_tokens(), p.config.training().seq_len(), lc.top_k(),
      p.config.model().seed() + uint64_t(step), p.tokenizer->vocab_size());
  return p.tokenizer->decode(std::vector<uint32_t>(ids.begin(), ids.end()));
}

// Under expert parallelism: every expert of this rank's stages, each broadcast from the ep
// rank that holds it (found by an all_gather of who holds it). Host tensors: over the control
// mesh.
void gather_experts(Trainer::Parts& p, std::map<std::string, Tensor>& state) {
  Communicator& ep = *p.control->ep();
  for (const Parameter& t : parameter_table(p.arch)) {
    if (!t.expert_parallel) continue;
    const int stage = stage_of_layer(t.layer, p.arch.n_layer, p.pipe);
    if (stage % p.pipe.pp != p.pipe.rank) continue;  // another pipeline rank's layer
    Tensor mine = Tensor::from_vector<int32_t>({state.count(t.name) ? 1 : 0}, {1});
    Tensor holders = Tensor::empty({ep.size()}, DType::kI32);
    ep.all_gather(mine, holders)->wait();
    int owner = 0;
    while (owner < ep.size() && holders.data<int32_t>()[owner] == 0) ++owner;
    PENG_CHECK(owner < ep.size(), "no expert-parallel rank holds ", t.name);
    Tensor v = owner == ep.rank() ? state.at(t.name) : Tensor::empty(t.logical_shape);
    ep.broadcast(v, owner)->wait();
    state[t.name] = v;
  }
}

// Every parameter of the model, logical, on every rank, on the host: each rank's stages
// (gathered over tp), then, under pipeline parallelism, each tensor broadcast over the
// control mesh from the pipeline rank that holds its primary copy (Parameter::layer's stage).
std::map<std::string, Tensor> whole_model_state(Trainer::Parts& p) {
  if (p.zero == 3) p.shards->materialize();
  std::map<std::string, Tensor> state = p.model->state();
  if (p.zero == 3) p.shards->release();
  if (p.experts.ep) gather_experts(p, state);
  if (!p.pp) return state;
  for (const Parameter& t : parameter_table(p.arch)) {
    const int stage = stage_of_layer(t.layer, p.arch.n_layer, p.pipe);
    const int owner = stage % p.pipe.pp;
    Tensor v = owner == p.pipe.rank ? state.at(t.name) : Tensor::empty(t.logical_shape);
    p.control_pp->broadcast(v, owner)->wait();
    state[t.name] = v;
  }
  return state;
}

// A Mixture-of-Experts step's routing, every MoE layer on every rank (collective over pp), and
// its imbalance added to the run's.
std::vector<LayerLoad> routing_loads(Trainer::Parts& p) {
  const MoeConfig& moe = p.arch.moe;
  if (!moe.enabled()) return {};
  std::vector<LayerLoad> loads;
  for (const RoutingStats& s : gather_routing(p.model->routing_stats(), moe.first_dense,
                                              p.arch.n_layer, moe.experts, p.control_pp)) {
    loads.push_back(layer_load(s));
    p.imbalance[s.layer] += loads.back().imbalance;
  }
  ++p.moe_steps;
  return loads;
}

// The host copy checkpoints go through when the state is on a GPU (pinned memory, allocated
// on first use).
void ensure_staging(Trainer::Parts& p) {
  if (!p.device.is_cuda() || p.staging) return;
  const int64_t values = std::max(p.model->parameters().numel(),  // flat, or ZeRO 3's shard
                                  p.zero == 3 ? p.shards->values().numel() : int64_t(0));
  p.staging = std::make_unique<HostStaging>(values, p.optimizer->exp_avg().numel());
  p.state.staging = p.staging.get();
}

}  // namespace

Trainer::Trainer(const proto::TrainConfig& config, TrainerHooks hooks)
    : p_(std::make_unique<Parts>()) {
  Parts& p = *p_;
  p.config = config;
  p.hooks = std::move(hooks);
  validate_train_config(p.config);
  PENG_INPUT_CHECK(p.hooks.train_data || !p.config.data().train().empty(),
                   "data.train is not set (--data FILE)");
  p.env = detect_launch_env();
  p.rank0 = p.env.rank == 0;
  // Before anything is built; the same kind on every rank.
  p.device = agree_on_device(resolve_device(p.config, p.env),
                             p.env.world_size > 1 ? &mpi_world() : nullptr);
  install_stop_handlers();
  build_model(p);
  build_data(p);
  build_optimizer(p);
  build_checkpoints(p);
  build_telemetry(p);
}

Trainer::~Trainer() = default;

void Trainer::restore() {
  Parts& p = *p_;
  const auto from = resume_path(p.config.checkpoint());
  if (!from) return;
  ckpt::CheckpointReader reader(*from);
  const proto::Manifest& m = reader.manifest();
  check_resumable(m, p.arch, *from);
  ensure_staging(p);
  if (p.zero == 3) p.shards->materialize();  // loads write whole tensors
  stage_to_host(p.state);                    // elements no region covers keep their values
  reader.read(load_regions(p.state));
  stage_to_device(p.state);
  if (p.zero == 3) p.shards->release();
  p.optimizer->set_steps_taken(m.optimizer().steps_taken());
  p.start_step = m.step();
  p.train_reader->set_origin(p.start_step, m.data().next_sequence());
  const proto::SavedLayout& l = m.layout();
  p.resumed =
      detail::concat("resumed from ", from->string(), " at step ", p.start_step,
                     " (saved under dp ", l.dp(), ", tp ", l.tp(), ", pp ", l.pp(), ", zero ",
                     l.zero(), l.ep() > 1 ? ", ep " + std::to_string(l.ep()) : "", ")");
  p.progress->message(p.resumed);
}

TrainReport Trainer::run() {
  Parts& p = *p_;
  const int steps = p.config.training().steps();
  restore();
  if (p.start_step >= steps) {
    if (p.rank0) {
      std::printf(
          "done: the checkpoint is at step %lld of training.steps = %d: nothing to "
          "train (raise --steps to continue)\n",
          static_cast<long long>(p.start_step), steps);
    }
    return p.report;
  }
  p.train_start = seconds_since(p.start);
  p.loop_start = Clock::now();
  int stopped_by = 0;
  p.telemetry->begin(p.start_step, p.config.checkpoint().dir());
  try {
    for (int64_t s = p.start_step; s < steps && !stopped_by; ++s) {
      stopped_by = after_step(s, step(s));
    }
    finish(stopped_by);
  } catch (const std::exception& e) {
    p.telemetry->fail(e.what());
    throw;
  }
  if (p.rank0) std::printf("%s\n", summary().c_str());
  return p.report;
}

// ---- one optimizer step ----

StepRecord Trainer::step(int64_t step) {
  Parts& p = *p_;
  const int64_t tokens = int64_t(p.config.training().batch_size()) * p.config.training().seq_len();
  const auto t0 = Clock::now();
  StepTimes t;
  PhaseTimer& timer = *p.timer;
  timer.start();
  p.model->parameters().zero_grads();
  p.model->begin_step();
  p.step_sums.zero();
  // This rank's sum of per-position losses goes to p.loss_sum: the pipeline's last stage, or
  // the micro-batches'.
  p.runner ? step_pipeline(step, t) : step_micro_batches(step, t);
  p.sync->sum_partial_gradients(p.grads());
  timer.lap(&t.time.exposed_comm_s);
  add_grad_squares(p.grads(), p.counted_others, *p.be, p.grad_squares);
  add_grad_squares(p.grads(), p.counted_experts, *p.be, p.expert_squares);
  timer.lap(&t.time.optimizer_s);
  // The one read of device values in a step: the loss and the gradient norm's squares.
  const Tensor sums = p.step_sums.to(Device::cpu());
  // This rank's share of the global mean loss (over B*T positions: micro-batches x dp).
  double loss = sums.data<double>()[0] /
                (double(p.micro_positions()) * double(p.micro_steps() * p.layout.mesh.dp));
  // One pipeline reduction: the loss (held by the last stage) and the ranks' bubbles.
  const std::vector<double> pp_sums =
      sum_over(p.control_pp, {loss, p.runner ? p.runner->bubble() : 0.0});
  loss = sum_over(p.control_dp, pp_sums[0]);
  const double bubble = pp_sums[1] / p.layout.mesh.pp;  // the pipeline ranks' mean waiting share
  const double experts = p.arch.moe.enabled()  // a dense model skips the experts' reduction
                             ? norm_from_squares(sums.data<double>()[2], p.expert_norm_groups)
                             : 0.0;
  const double norm = std::hypot(norm_from_squares(sums.data<double>()[1], p.norm_groups), experts);
  timer.lap(&t.time.exposed_comm_s);
  PENG_CHECK(std::isfinite(loss), "loss is ", loss, " at step ", step,
             ": training diverged (lower optim.lr or check the data)");
  clip_grad_norm(p.grads(), *p.be, norm, p.config.optim().grad_clip());
  const float lr = learning_rate(p, step);
  p.optimizer->step(lr, p.grads());
  timer.lap(&t.time.optimizer_s);
  if (p.zero == 1 || p.zero == 2) p.reducer->all_gather_values();
  // Tied copies got the same gradient, but summed over dp in buckets laid out differently
  // on their ranks: keep them bit-identical (ZeRO-3: their chunks, laid out alike).
  if (p.zero == 3) {
    p.sync->broadcast_tied_values(
        [&](const Parameter& t) { return p.shards->chunk_of(p.shards->values(), t); });
  } else {
    p.sync->broadcast_tied_values();
  }
  p.model->update_routing_biases();    // MoE: the step's global counts, the same on every rank
  if (p.shards) p.shards->end_step();  // after the model's own buffers changed
  const std::vector<LayerLoad> moe = routing_loads(p);
  timer.lap(&t.time.exposed_comm_s);
  timer.collect();  // on a GPU: waits for the step's last work (the update)
  if (p.runner) t.time.pp_bubble_s = t.pipeline_other_s;
  const double dt = seconds_since(t0);
  const StepRecord r{.step = step,
                     .loss = loss,
                     .grad_norm = norm,
                     .lr = lr,
                     .tokens_per_s = double(tokens) / dt,
                     .step_time_s = dt};
  StepAction action;
  if (p.hooks.on_step) action = p.hooks.on_step(r);
  for (const auto& [name, value] : action.metrics) {  // every rank, before any collective
    PENG_INPUT_CHECK(!name.empty(), "the step callback returned a metric without a name");
  }
  p.stop_requested = action.stop;
  p.telemetry->on_step({.step = step,
                        .loss = loss,
                        .grad_norm = norm,
                        .lr = lr,
                        .step_time_s = dt,
                        .pp_bubble = bubble,
                        .breakdown = t.time,
                        .moe = moe,
                        .state_bytes = allocated_state_bytes(p),
                        .activation_bytes = p.activation_bytes,
                        .predicted_state_bytes = p.predicted_state,
                        .predicted_activation_bytes = p.predicted_activations,
                        .unit_peak_bytes = p.shards ? p.shards->peak_unit_bytes() : 0,
                        .extra = std::move(action.metrics)});
  return r;
}

// Without a pipeline: each micro-batch's forward and backward (a MoE model with a balance
// loss: every forward, then every backward). Gradients are scaled by 1/(B*T) of the global
// batch: their sum over micro-batches and dp ranks is the gradient of the global mean loss.
// Only the last micro-batch communicates, except with ZeRO 2 and 3, which reduce-scatter each
// one into the shard. The losses add up in p.loss_sum on the device.
void Trainer::step_micro_batches(int64_t step, StepTimes& t) {
  Parts& p = *p_;
  PhaseTimer& timer = *p.timer;
  const int64_t m = p.micro_steps();
  const float grad_scale =
      float(1.0 / double(p.config.training().batch_size() * p.config.training().seq_len()));
  // A balance loss over the global batch needs every micro-batch's routing before the first
  // backward: then all forwards run first, their activations stashed (models/nn/moe.h).
  const bool forwards_first = m > 1 && has_balance_loss(p);
  std::vector<std::vector<Tensor>> stashed;
  const auto forward = [&](int64_t k) {
    timer.lap(nullptr);
    p.train_reader->read(step, k);
    timer.lap(&t.time.data_s);
    p.model->forward_sum_into(p.train_reader->x(), p.train_reader->y(), p.loss_sum);
    std::set<const void*> seen;  // what this forward keeps, and the forwards stashed before it
    int64_t kept = p.model->kept_activation_bytes(seen);
    for (const auto& tensors : stashed) {
      for (const Tensor& x : tensors) kept += count_storage(x, seen);
    }
    p.activation_bytes = std::max(p.activation_bytes, kept);
    timer.lap(&t.time.forward_s);
  };
  if (forwards_first) {
    for (int64_t k = 0; k < m; ++k) {
      forward(k);
      stashed.push_back(p.model->stash_activations(0));
    }
  }
  for (int64_t k = 0; k < m; ++k) {
    const bool last = k + 1 == m;
    const bool communicate = p.reducer && (last || p.zero >= 2);
    if (communicate) p.reducer->arm(/*accumulate=*/p.zero >= 2 && k > 0);
    if (forwards_first) {
      p.model->restore_activations(0, std::move(stashed[size_t(k)]));
    } else {
      forward(k);
    }
    timer.lap(nullptr);
    p.model->backward(grad_scale);
    timer.lap(&t.time.backward_s);
    if (communicate) {
      p.reducer->wait();
      timer.lap(&t.time.exposed_comm_s);
      t.time.bucket_comm_s += p.reducer->take_comm_seconds();
    }
  }
}

// Under pipeline parallelism: the schedule, then the tied copies, then dp (no overlap). ZeRO-3
// sums the tied copies' chunks after the dp reduction instead (the same sum, reordered).
void Trainer::step_pipeline(int64_t step, StepTimes& t) {
  Parts& p = *p_;
  PhaseTimer& timer = *p.timer;
  const float grad_scale =
      float(1.0 / double(p.config.training().batch_size() * p.config.training().seq_len()));
  timer.lap(nullptr);
  p.runner->train(micro_batches(*p.train_reader, step, &timer, &t.time.data_s, &t.pipeline_other_s),
                  grad_scale, &p.loss_sum,
                  {.timer = &timer,
                   .forward_s = &t.time.forward_s,
                   .backward_s = &t.time.backward_s,
                   .other_s = &t.pipeline_other_s});
  timer.lap(&t.pipeline_other_s);
  p.activation_bytes = std::max(p.activation_bytes, p.runner->peak_stash_bytes());
  if (p.zero != 3) p.sync->sum_tied_gradients();
  if (p.reducer) {
    p.reducer->arm();
    p.reducer->wait();
    t.time.bucket_comm_s += p.reducer->take_comm_seconds();
  }
  if (p.zero == 3) {
    p.sync->sum_tied_gradients(
        [&](const Parameter& t) { return p.shards->chunk_of(p.reducer->shard_grads(), t); });
  }
  timer.lap(&t.time.exposed_comm_s);
}

// ---- between steps ----

int Trainer::after_step(int64_t step, const StepRecord& r) {
  Parts& p = *p_;
  const auto& lc = p.config.logging();
  const auto& cc = p.config.checkpoint();
  p.report.steps.push_back(r);
  p.report.tokens += int64_t(p.config.training().batch_size()) * p.config.training().seq_len();
  const double elapsed = seconds_since(p.loop_start);
  p.progress->step(step, r.loss, double(p.report.tokens) / elapsed, elapsed);

  const bool last = step + 1 == p.config.training().steps();
  const auto e0 = Clock::now();
  if (p.val_reader && ((lc.val_every() > 0 && (step + 1) % lc.val_every() == 0) || last)) {
    const double v = evaluate(p, lc.val_batches());
    p.report.val_losses.emplace_back(step, v);
    p.telemetry->on_validation(step, v);
    p.progress->message(detail::concat("step ", step + 1, " | val loss ", v));
  }
  // Every rank samples (only rank 0 prints): a rank-0-only pause longer than the
  // collective timeout would look like a hang to the others.
  if (lc.sample_every() > 0 && ((step + 1) % lc.sample_every() == 0 || last)) {
    p.progress->message("sample at step " + std::to_string(step + 1) + ":\n" +
                        sample_text(p, step) + "\n---");
  }
  p.telemetry->add_evaluation_time(seconds_since(e0));
  const int stopped_by =  // collective
      p.telemetry->end_of_step(p.stop_requested ? kStopRequested : stop_signal());
  if (p.checkpointer && ((cc.every() > 0 && (step + 1) % cc.every() == 0) || last || stopped_by)) {
    save_checkpoint(step);
  }
  if (stopped_by) {
    std::string where = "no --checkpoint-dir: nothing saved";
    if (p.checkpointer) {
      p.checkpointer->wait();
      where = "checkpoint saved to " + p.checkpointer->last_committed().string();
    }
    p.progress->message(detail::concat("received ", signal_name(stopped_by),
                                       ": stopped after step ", step + 1, "; ", where,
                                       "; exiting"));
  }
  return stopped_by;
}

void Trainer::save_checkpoint(int64_t step) {
  Parts& p = *p_;
  const auto t0 = Clock::now();
  ensure_staging(p);
  stage_to_host(p.state);  // a GPU's state snapshot at the step boundary
  const double staged_s = seconds_since(t0);
  const double stall =
      staged_s +
      p.checkpointer->save(
          save_regions(p.state),
          checkpoint_meta(recorded_config(p), p.arch, p.layout, p.env.world_size, step + 1,
                          p.train_reader->batch_start(step + 1), *p.optimizer));
  p.report.checkpoint_stall_s += stall;
  p.telemetry->on_checkpoint(step, step + 1, stall);
  p.progress->message(p.config.checkpoint().async()
                          ? detail::concat("checkpoint step ", step + 1,
                                           ": training resumed after ", stall,
                                           " s; writing in the background")
                          : detail::concat("checkpoint ", p.checkpointer->last_committed().string(),
                                           " saved (", stall, " s)"));
}

void Trainer::finish(int stopped_by) {
  Parts& p = *p_;
  const auto& lc = p.config.logging();
  if (p.checkpointer) p.checkpointer->wait();
  p.progress->finish();
  p.report.seconds = seconds_since(p.loop_start);
  if (!lc.export_to().empty()) {
    const auto state = whole_model_state(p);  // collective over tp and pp
    if (p.rank0) {
      save_hf_model(lc.export_to(), p.arch, state, DType::kF32,
                    parse_shard_size(lc.export_max_shard_size(), "logging.export_max_shard_size"));
    }
  }
  p.telemetry->finish(stopped_by ? std::string("stopped: ") + signal_name(stopped_by)
                                 : std::string("completed"));  // collective
}

std::string Trainer::summary() const {
  const Parts& p = *p_;
  const TrainReport& r = p.report;
  const double tps = double(r.tokens) / r.seconds;
  std::string s =
      detail::concat("done: ", r.steps.size(), " steps, ", r.tokens, " tokens in ",
                     format_duration(r.seconds), " (start-up ", format_duration(p.train_start),
                     ") | ", int64_t(tps), " tok/s | ", efficiency_summary(*p.telemetry),
                     " | loss ", r.steps.front().loss, " -> ", r.steps.back().loss);
  if (!p.resumed.empty()) s += detail::concat(" | from step ", p.start_step);
  if (p.checkpointer) {
    s += detail::concat(" | checkpoint ", p.checkpointer->last_committed().string(), " (stall ",
                        r.checkpoint_stall_s, " s)");
  }
  if (!r.val_losses.empty()) s += detail::concat(" | val loss ", r.val_losses.back().second);
  if (p.moe_steps > 0) {
    std::vector<std::pair<int, double>> mean;
    for (const auto& [layer, sum] : p.imbalance)
      mean.emplace_back(layer, sum / double(p.moe_steps));
    s += " | " + imbalance_summary(mean);
  }
  if (!p.config.logging().export_to().empty()) {
    s += " | model written to " + p.config.logging().export_to();
  }
  return s;
}

TrainReport train(const proto::TrainConfig& config) { return Trainer(config).run(); }

}  // namespace peng
