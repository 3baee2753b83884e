#include "peng/launch/job_telemetry.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>

#include "peng/accounting/ledger.h"
#include "peng/core/cuda/memory.h"
#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"
#include "peng/core/tensor.h"
#include "peng/launch/config.h"
#include "peng/parallel/communicator.h"
#include "peng/telemetry/metrics_jsonl.h"
#include "peng/telemetry/nvml.h"
#include "peng/telemetry/peak.h"
#include "peng/telemetry/prometheus.h"
#include "peng/telemetry/system_info.h"
#include "peng/telemetry/tensorboard/event_file.h"

namespace peng {

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kProbeSeconds = 0.3;  // the CPU peak probe at start
constexpr int kHostChars = 64;

// One row per rank of gather_rank_stats().
enum Stat {
  kStepTime,
  kData,
  kForward,
  kBackward,
  kOptimizer,
  kExposedComm,
  kBubble,
  kMemHighWater,
  kPower,          // W, latest NVML sample (NaN: no meter)
  kEnergy,         // J since the sampler started
  kUtil,           // SM utilisation 0..1
  kTemperature,    // degrees C
  kDeviceMem,      // bytes used on the device
  kIntervalPower,  // mean W since the previous ledger record
  kStats
};

// Every rank's `row`, in rank order.
std::vector<double> all_gather_rows(Communicator* world, const std::vector<double>& row) {
  if (!world) return row;
  Tensor in = Tensor::from_vector<double>(row, {int64_t(row.size())});
  Tensor out = Tensor::empty({int64_t(row.size()) * world->size()}, DType::kF64);
  world->all_gather(in, out)->wait();
  const double* p = out.data<double>();
  return std::vector<double>(p, p + out.numel());
}

// Host names of all ranks, each once, in rank order.
std::vector<std::string> gather_hosts(Communicator* world) {
  std::string mine = host_name().substr(0, kHostChars);
  std::vector<double> row(kHostChars, 0.0);
  for (size_t i = 0; i < mine.size(); ++i) row[i] = double(static_cast<unsigned char>(mine[i]));
  const std::vector<double> all = all_gather_rows(world, row);
  std::vector<std::string> hosts;
  for (size_t r = 0; r < all.size() / kHostChars; ++r) {
    std::string h;
    for (int i = 0; i < kHostChars && all[r * kHostChars + i] != 0; ++i)
      h += char(int(all[r * kHostChars + i]));
    if (std::find(hosts.begin(), hosts.end(), h) == hosts.end()) hosts.push_back(h);
  }
  return hosts;
}

double sum_column(const std::vector<double>& stats, int column) {
  double s = 0;
  for (size_t r = 0; r * kStats < stats.size(); ++r) s += stats[r * kStats + column];
  return s;
}

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nullptr; }

}  // namespace

JobTelemetry::JobTelemetry(const proto::TrainConfig& config, const LaunchEnv& env,
                           Communicator* world, Device compute, const FlopsShape& flops,
                           int64_t tokens_per_step, Clock::time_point job_start)
    : config_(config),
      env_(env),
      world_(world),
      compute_(compute),
      rank0_(env.rank == 0),
      job_start_(job_start),
      last_interval_(Clock::now()),
      job_start_utc_(std::chrono::system_clock::now() -
                     std::chrono::duration_cast<std::chrono::system_clock::duration>(Clock::now() -
                                                                                     job_start)),
      model_flops_(model_flops_per_token(flops)),
      causal_flops_(causal_model_flops_per_token(flops)),
      hardware_flops_(hardware_flops_per_token(flops)),
      tokens_per_step_(tokens_per_step) {
  const proto::TelemetryConfig& tc = config.telemetry();
  hosts_ = gather_hosts(world_);  // collective; also lines the ranks up for the probe
  const bool gpu = compute.type == DeviceType::kCuda;
  std::string why_not;
  nvml_ = NvmlSampler::open(env.local_rank, tc.nvml_period_s(), &why_not);
  device_ = gpu ? (nvml_ ? nvml_->latest().name : cuda::device_name(compute.index))
                : "cpu: " + cpu_model_name();
  const Peak peak = resolve_peak(tc.peak(), device_, gpu, kProbeSeconds);
  // (peak, has a meter) of every rank; collective.
  const std::vector<double> rows = all_gather_rows(world_, {peak.flops, nvml_ ? 1.0 : 0.0});
  int meters = 0;
  for (size_t r = 0; r < rows.size(); r += 2) {
    peak_flops_ += rows[r] / double(rows.size() / 2);
    meters += int(rows[r + 1]);
  }
  peak_source_ = peak.source;
  // Energy is the compute devices': NVML's GPUs count only when the job computes on them,
  // and only when every rank has its meter (a partial sum would understate a claim).
  energy_metered_ = gpu && meters == env.world_size;
  if (energy_metered_) last_energy_j_ = 0;

  if (rank0_) {  // the sinks; a bad path ends the job here (main() aborts every rank)
    metrics_ = std::make_unique<MetricsJsonl>(config.logging().metrics_jsonl());
    if (!tc.tensorboard().empty()) {
      tensorboard_ = std::make_unique<tensorboard::EventFileWriter>(tc.tensorboard());
    }
    if (!tc.prometheus_textfile().empty()) {
      AtomicFileWriter probe(tc.prometheus_textfile());  // fails now on a bad folder
    }
    if (!tc.ledger().empty()) {
      const std::string key =
          tc.ledger_key().empty() ? std::string() : ledger::read_key_file(tc.ledger_key());
      std::shared_ptr<const ledger::SigningKey> signer;
      if (!tc.ledger_signing_key().empty()) {
        signer = std::make_shared<const ledger::SigningKey>(
            ledger::SigningKey::load(tc.ledger_signing_key()));
      }
      if (std::filesystem::exists(tc.ledger())) {  // refuse a tampered one
        const std::optional<ledger::PublicKey> pub =
            signer ? std::optional<ledger::PublicKey>(signer->public_key()) : std::nullopt;
        ledger_records_ = ledger::read_verified(tc.ledger(), key, pub ? &*pub : nullptr);
      }
      ledger_ = std::make_unique<ledger::LedgerWriter>(tc.ledger(), key, signer);
    }
    job_id_ = job_id_from_env(job_start_utc_);
    config_hash_ = ledger::sha256_hex(config_to_text(config));
  }

  char line[512];
  std::snprintf(line, sizeof line,
                "flops/token: %.4g (PaLM 6N+12LCT, used for MFU) | causal-halved (Megatron) "
                "%.4g | executed %.4g (HFU) | peak %.4g TFLOP/s per device (%s) x %d",
                model_flops_, causal_flops_, hardware_flops_, peak_flops_ / 1e12,
                peak_source_.c_str(), env.world_size);
  messages_.push_back(line);
  if (!nvml_) {
    messages_.push_back("nvml: not available on rank 0 (" + why_not +
                        "): no GPU power, energy or utilisation readings");
  } else {
    messages_.push_back(detail::concat(
        "nvml: sampling ", nvml_->latest().name, " every ", tc.nvml_period_s(), " s on ", meters,
        " of ", env.world_size, " ranks",
        energy_metered_ ? "" : " (readings only: the job computes on the CPU, no energy billed)"));
  }
}

JobTelemetry::~JobTelemetry() = default;

double JobTelemetry::wall_s() const {
  return std::chrono::duration<double>(Clock::now() - job_start_).count();
}

void JobTelemetry::begin(int64_t start_step, const std::string& checkpoint_dir) {
  goodput_.startup_s = wall_s();
  step_ = start_step;
  last_interval_ = Clock::now();
  if (!checkpoint_dir.empty()) {
    checkpoint_dir_ = std::filesystem::weakly_canonical(std::filesystem::absolute(checkpoint_dir));
  }
  // Steps an earlier run of this checkpoint folder reached beyond the resumed checkpoint
  // are done again: goodput counts them as lost.
  for (const nlohmann::json& r : ledger_records_) {
    if (start_step == 0 || checkpoint_dir_.empty()) break;  // nothing was resumed
    const auto dir = r.find("checkpoint_dir");
    const auto step = r.find("step");
    if (dir != r.end() && dir->is_string() && *dir == checkpoint_dir_ && step != r.end() &&
        step->is_number_integer()) {
      reached_before_ = std::max(reached_before_, step->get<int64_t>());
    }
  }
  ledger_records_.clear();
}

double JobTelemetry::mfu() const {
  return utilisation(model_flops_, double(tokens_), step_seconds_, env_.world_size, peak_flops_);
}
double JobTelemetry::hfu() const {
  return utilisation(hardware_flops_, double(tokens_), step_seconds_, env_.world_size, peak_flops_);
}
double JobTelemetry::goodput() const { return goodput_.goodput(wall_s()); }

void JobTelemetry::on_step(const StepMetrics& m) {
  last_ = m;
  ++steps_;
  step_ = m.step + 1;
  tokens_ += tokens_per_step_;
  step_seconds_ += m.step_time_s;
  interval_flops_ += model_flops_ * double(tokens_per_step_);
  interval_step_s_ += m.step_time_s;
  goodput_.add_step(m.step_time_s, m.step < reached_before_);

  const double tokens_per_s = double(tokens_per_step_) / m.step_time_s;
  const double step_mfu = utilisation(model_flops_, double(tokens_per_step_), m.step_time_s,
                                      env_.world_size, peak_flops_);
  const double step_hfu = utilisation(hardware_flops_, double(tokens_per_step_), m.step_time_s,
                                      env_.world_size, peak_flops_);
  const double tflops = model_flops_ * tokens_per_s / env_.world_size / 1e12;
  const StepBreakdown& b = m.breakdown;
  if (rank0_) {
    nlohmann::json line = {{"step", m.step},
                           {"loss", m.loss},
                           {"grad_norm", m.grad_norm},
                           {"lr", m.lr},
                           {"tokens_per_s", tokens_per_s},
                           {"step_time_s", m.step_time_s},
                           {"tokens", tokens_},
                           {"model_tflops", model_flops_ * tokens_per_s / 1e12},
                           {"tflops", tflops},
                           {"mfu", step_mfu},
                           {"hfu", step_hfu},
                           {"data_s", b.data_s},
                           {"forward_s", b.forward_s},
                           {"backward_s", b.backward_s},
                           {"optimizer_s", b.optimizer_s},
                           {"exposed_comm_s", b.exposed_comm_s},
                           {"pp_bubble_s", b.pp_bubble_s},
                           {"pp_bubble", m.pp_bubble},
                           {"mem_high_water_bytes", memory_high_water_bytes()},
                           {"state_bytes", m.state_bytes},
                           {"state_bytes_predicted", m.predicted_state_bytes},
                           {"activation_bytes", m.activation_bytes},
                           {"activation_bytes_predicted", m.predicted_activation_bytes}};
    if (m.unit_peak_bytes > 0) line["zero_unit_peak_bytes"] = m.unit_peak_bytes;
    if (b.bucket_comm_s > 0) line["bucket_comm_s"] = b.bucket_comm_s;
    if (compute_.is_cuda()) {  // the caching allocator's bytes on this rank's GPU
      const cuda::MemoryStats mem = cuda::memory_stats(compute_.index);
      line["device_mem_peak_bytes"] = mem.peak;
      line["device_mem_reserved_bytes"] = mem.reserved;
    }
    if (nvml_) {
      const GpuSample g = nvml_->latest();
      line["gpu_power_w"] = g.power_w;
      line["gpu_util"] = g.sm_util;
      line["gpu_mem_used_bytes"] = g.mem_used_bytes;
      line["gpu_temperature_c"] = g.temperature_c;
    }
    if (!m.moe.empty()) add_routing(line, m.moe);
    for (const auto& [name, value] : m.extra) line["user/" + name] = value;
    metrics_->write(line);
  }
  const int every = config_.telemetry().export_every();
  if ((m.step + 1) % every != 0) return;
  if (tensorboard_) {
    tensorboard_->add_scalars(m.step, {{"train/loss", m.loss},
                                       {"train/lr", m.lr},
                                       {"train/grad_norm", m.grad_norm},
                                       {"perf/tokens_per_s", tokens_per_s},
                                       {"perf/mfu", step_mfu},
                                       {"perf/tflops_per_device", tflops},
                                       {"perf/goodput", goodput()}});
    if (!m.moe.empty()) tensorboard_->add_scalars(m.step, routing_scalars(m.moe));
    std::vector<std::pair<std::string, double>> user;
    for (const auto& [name, value] : m.extra) user.emplace_back("user/" + name, value);
    if (!user.empty()) tensorboard_->add_scalars(m.step, user);
    tensorboard_->flush();
  }
  if (!config_.telemetry().prometheus_textfile().empty()) {
    write_prometheus(gather_rank_stats(/*ledger_interval=*/false));  // collective
  }
}

// The routing of a Mixture-of-Experts step in a metrics line: "aux_loss" (all layers) and
// "moe": one object per MoE layer.
void JobTelemetry::add_routing(nlohmann::json& line, const std::vector<LayerLoad>& moe) {
  line["aux_loss"] = total_aux_loss(moe);
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerLoad& l : moe) {
    layers.push_back({{"layer", l.layer},
                      {"aux_loss", l.aux_loss},
                      {"tokens_min", l.min},
                      {"tokens_max", l.max},
                      {"tokens_mean", l.mean},
                      {"imbalance", l.imbalance},
                      {"dropped", 0},
                      {"tokens", l.tokens}});
  }
  line["moe"] = std::move(layers);
}

void JobTelemetry::on_validation(int64_t step, double val_loss) {
  if (!rank0_) return;
  metrics_->write({{"step", step}, {"val_loss", val_loss}});
  if (tensorboard_) {
    tensorboard_->add_scalars(step, {{"val/loss", val_loss}});
    tensorboard_->flush();
  }
}

void JobTelemetry::on_checkpoint(int64_t step, int64_t checkpoint_step, double stall_s) {
  goodput_.checkpoint_stall_s += stall_s;
  checkpoint_steps_.push_back(checkpoint_step);
  if (rank0_) {
    metrics_->write(
        {{"step", step}, {"checkpoint_step", checkpoint_step}, {"checkpoint_stall_s", stall_s}});
  }
}

void JobTelemetry::add_evaluation_time(double seconds) { goodput_.evaluation_s += seconds; }

int JobTelemetry::end_of_step(int local_signal) {
  const bool due =
      ledger_ && std::chrono::duration<double>(Clock::now() - last_interval_).count() >=
                     config_.telemetry().ledger_every_s();
  Tensor t = Tensor::from_vector<int32_t>({int32_t(local_signal), due ? 1 : 0}, {2});
  if (world_) world_->all_reduce(t, ReduceOp::kMax)->wait();
  if (t.data<int32_t>()[1]) {
    const std::vector<double> stats = gather_rank_stats(/*ledger_interval=*/true);  // collective
    if (ledger_) ledger_->append(ledger_record("interval", "running", &stats));
    last_interval_ = Clock::now();
    interval_flops_ = interval_step_s_ = 0;
  }
  return t.data<int32_t>()[0];
}

std::vector<double> JobTelemetry::gather_rank_stats(bool ledger_interval) {
  std::vector<double> row(kStats, kNaN);
  const StepBreakdown& b = last_.breakdown;
  row[kStepTime] = last_.step_time_s;
  row[kData] = b.data_s;
  row[kForward] = b.forward_s;
  row[kBackward] = b.backward_s;
  row[kOptimizer] = b.optimizer_s;
  row[kExposedComm] = b.exposed_comm_s;
  row[kBubble] = b.pp_bubble_s;
  row[kMemHighWater] = double(memory_high_water_bytes());
  if (nvml_) {
    const GpuSample g = nvml_->latest();
    row[kPower] = g.power_w;
    row[kEnergy] = g.energy_j;
    row[kUtil] = g.sm_util;
    row[kTemperature] = g.temperature_c;
    row[kDeviceMem] = g.mem_used_bytes;
    if (ledger_interval) row[kIntervalPower] = nvml_->take_interval_mean_power();
  }
  return all_gather_rows(world_, row);
}

nlohmann::json JobTelemetry::ledger_record(const std::string& kind, const std::string& status,
                                           const std::vector<double>* stats) {
  const double wall = wall_s();
  const int devices = env_.world_size;
  double energy = kNaN, power = kNaN;
  if (stats && energy_metered_) {
    energy = sum_column(*stats, kEnergy);
    power = sum_column(*stats, kIntervalPower);
    last_energy_j_ = energy;
  } else if (energy_metered_) {
    energy = last_energy_j_;  // a failing job: the last figure all ranks agreed on
  }
  const double model_flops = model_flops_ * double(tokens_);
  return {{"kind", kind},
          {"job", job_id_},
          {"job_record", job_records_++},
          {"project", config_.telemetry().project()},
          {"user", user_name()},
          {"hosts", hosts_},
          {"device", device_},
          {"devices", devices},
          {"start", utc_iso8601(job_start_utc_)},
          {"time", utc_iso8601(std::chrono::system_clock::now())},
          {"config_hash", config_hash_},
          {"checkpoint_dir", checkpoint_dir_},
          {"status", status},
          {"wall_s", wall},
          {"device_seconds", wall * devices},
          {"productive_s", goodput_.productive_s},
          {"goodput", goodput_.goodput(wall)},
          {"goodput_lost_s", goodput_.to_json(wall)["lost_s"]},
          {"steps", steps_},
          {"step", step_},
          {"tokens", tokens_},
          {"model_flops", model_flops},
          {"peak_flops", peak_flops_},
          {"peak_source", peak_source_},
          {"mfu", mfu()},
          {"hfu", hfu()},
          {"energy_j", number_or_null(energy)},
          {"energy_source", energy_metered_ ? "nvml" : "none"},
          {"checkpoint_steps", checkpoint_steps_},
          {"loss", steps_ > 0 ? nlohmann::json(last_.loss) : nlohmann::json(nullptr)},
          {"interval_mfu", interval_step_s_ > 0
                               ? nlohmann::json(utilisation(1.0, interval_flops_, interval_step_s_,
                                                            devices, peak_flops_))
                               : nlohmann::json(nullptr)},
          {"power_w", number_or_null(power)}};
}

void JobTelemetry::write_prometheus(const std::vector<double>& stats) {
  if (!rank0_) return;
  using Labels = std::vector<std::pair<std::string, std::string>>;
  const Labels job = {{"job", job_id_}};
  const auto per_rank = [&](int column) {
    std::vector<PromSeries> series;
    for (size_t r = 0; r * kStats < stats.size(); ++r) {
      const double v = stats[r * kStats + column];
      if (!std::isfinite(v)) continue;
      series.push_back({{{"job", job_id_}, {"rank", std::to_string(r)}, {"device", device_}}, v});
    }
    return series;
  };
  const double tokens_per_s = double(tokens_per_step_) / last_.step_time_s;
  std::vector<PromMetric> metrics = {
      {"peng_step", "optimizer steps completed", "gauge", {{job, double(step_)}}},
      {"peng_tokens_total", "tokens trained by this job", "counter", {{job, double(tokens_)}}},
      {"peng_tokens_per_second",
       "tokens per second of the last step",
       "gauge",
       {{job, tokens_per_s}}},
      {"peng_loss", "training loss of the last step", "gauge", {{job, last_.loss}}},
      {"peng_model_flops_per_second",
       "achieved model FLOP/s per device, last step",
       "gauge",
       {{job, model_flops_ * tokens_per_s / env_.world_size}}},
      {"peng_mfu_ratio", "model FLOPs utilisation over the job's steps", "gauge", {{job, mfu()}}},
      {"peng_hfu_ratio",
       "hardware FLOPs utilisation over the job's steps",
       "gauge",
       {{job, hfu()}}},
      {"peng_goodput_ratio",
       "productive step time / wall time since job start",
       "gauge",
       {{job, goodput()}}},
      {"peng_checkpoint_stall_seconds_total",
       "seconds training waited for checkpoints",
       "counter",
       {{job, goodput_.checkpoint_stall_s}}},
      {"peng_peak_flops_per_second",
       "peak FLOP/s per device used for MFU",
       "gauge",
       {{{{"job", job_id_}, {"device", device_}}, peak_flops_}}},
      {"peng_step_duration_seconds", "wall time of the last step", "gauge", per_rank(kStepTime)},
      {"peng_memory_high_water_bytes", "peak resident memory of the rank", "gauge",
       per_rank(kMemHighWater)},
  };
  PromMetric phases{"peng_step_phase_seconds", "the last step's time by phase", "gauge", {}};
  const std::pair<const char*, int> phase_columns[] = {
      {"data", kData},           {"forward", kForward},          {"backward", kBackward},
      {"optimizer", kOptimizer}, {"exposed_comm", kExposedComm}, {"pp_bubble", kBubble}};
  for (const auto& [phase, column] : phase_columns) {
    for (PromSeries s : per_rank(column)) {
      s.labels.emplace_back("phase", phase);
      phases.series.push_back(std::move(s));
    }
  }
  metrics.push_back(std::move(phases));
  const std::pair<PromMetric, int> gpu[] = {
      {{"peng_gpu_power_watts", "GPU power draw (NVML)", "gauge", {}}, kPower},
      {{"peng_gpu_energy_joules_total", "GPU energy since the job started (NVML)", "counter", {}},
       kEnergy},
      {{"peng_gpu_utilization_ratio", "GPU SM utilisation (NVML)", "gauge", {}}, kUtil},
      {{"peng_gpu_temperature_celsius", "GPU temperature (NVML)", "gauge", {}}, kTemperature},
      {{"peng_gpu_memory_used_bytes", "GPU memory in use (NVML)", "gauge", {}}, kDeviceMem}};
  for (const auto& [metric, column] : gpu) {
    PromMetric m = metric;
    m.series = per_rank(column);
    if (!m.series.empty()) metrics.push_back(std::move(m));
  }
  for (PromMetric& m : routing_prometheus(last_.moe, job_id_)) metrics.push_back(std::move(m));
  write_prometheus_textfile(config_.telemetry().prometheus_textfile(), metrics);
}

void JobTelemetry::finish(const std::string& status) {
  const std::vector<double> stats = gather_rank_stats(/*ledger_interval=*/true);  // collective
  if (!rank0_) return;
  if (ledger_) ledger_->append(ledger_record("end", status, &stats));
  if (!config_.telemetry().prometheus_textfile().empty() && steps_ > 0) write_prometheus(stats);
  metrics_->write({{"step", step_ - 1}, {"goodput", goodput_.to_json(wall_s())}});
  if (tensorboard_) tensorboard_->flush();
}

void JobTelemetry::fail(const std::string& error) {
  if (!rank0_ || !ledger_) return;
  try {
    ledger_->append(ledger_record("end", "failed: " + error, nullptr));
  } catch (const std::exception&) {
    // The job is already failing with `error`; the ledger's own error would hide it.
  }
}

}  // namespace peng
