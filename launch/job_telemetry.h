// JobTelemetry: what `peng train` measures and where it goes (docs/TELEMETRY.md).
//
// Every rank builds one and calls it at the same points in the same order: some calls
// are collective over the world (marked). Rank 0 owns the sinks: the metrics JSONL,
// TensorBoard event files, the Prometheus textfile and the usage ledger.
//
//   constructor (collective)   host names gathered; peak FLOP/s resolved (the CPU probe
//                              runs on every rank at once, averaged); NVML opened;
//                              the ledger verified and opened; FLOPs/token printed
//   begin(start_step)          training starts (a resumed run: at start_step)
//   on_step (collective every telemetry.export_every steps when Prometheus is on)
//   on_validation, on_checkpoint, add_evaluation_time
//   end_of_step (collective)   agrees on a stop signal and on a due ledger interval record
//   finish (collective)        the end record; the summary's figures
//   fail                       rank 0's end record for a job that throws (not collective)
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "peng/config.pb.h"
#include "peng/core/dtype.h"
#include "peng/launch/environment.h"
#include "peng/launch/routing_metrics.h"
#include "peng/telemetry/flops.h"
#include "peng/telemetry/goodput.h"

namespace peng {

class Communicator;
class MetricsJsonl;
class NvmlSampler;
namespace tensorboard {
class EventFileWriter;
}
namespace ledger {
class LedgerWriter;
}

// Where one optimizer step's time went, in seconds, on this rank.
struct StepBreakdown {
  double data_s = 0;          // reading the micro-batches
  double forward_s = 0;       // forward passes (with their tensor-parallel collectives)
  double backward_s = 0;      // backward passes (gradient buckets launched meanwhile)
  double optimizer_s = 0;     // norm, clipping, AdamW
  double exposed_comm_s = 0;  // waiting for data-parallel collectives
  // The gradient buckets' communication, hidden or not (GradReducer::take_comm_seconds;
  // 0: not measured: no dp, or NCCL's stream-ordered buckets).
  double bucket_comm_s = 0;
  double pp_bubble_s = 0;  // waiting for pipeline transfers
};

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, grad_norm = 0, lr = 0;
  double step_time_s = 0;  // this rank's wall time of the step
  double pp_bubble = 0;    // the pipeline ranks' mean share of the schedule spent waiting
  StepBreakdown breakdown;
  std::vector<LayerLoad> moe;  // a Mixture-of-Experts model's routing (empty: dense)
  // Measured bytes on this rank (launch/memory_plan.h predicts them): the training state
  // as allocated; the most activations kept at once so far (every micro-batch in flight);
  // ZeRO 2/3's most per-layer buffers at once: gathered values (ZeRO 3) and unreduced
  // gradients (0: ZeRO 0/1).
  int64_t state_bytes = 0, activation_bytes = 0;
  int64_t predicted_state_bytes = 0, predicted_activation_bytes = 0;  // the start-up lines
  int64_t unit_peak_bytes = 0;
  // A program's own figures (TrainerHooks::on_step): "user/<name>" in the JSONL line and
  // TensorBoard.
  std::vector<std::pair<std::string, double>> extra;
};

class JobTelemetry {
 public:
  // `world`: null for a single process; every rank drives one device of kind `compute`.
  JobTelemetry(const proto::TrainConfig& config, const LaunchEnv& env, Communicator* world,
               Device compute, const FlopsShape& flops, int64_t tokens_per_step,
               std::chrono::steady_clock::time_point job_start);
  ~JobTelemetry();

  // The lines printed at start (FLOPs convention, peak, NVML): rank 0 prints them.
  const std::vector<std::string>& start_messages() const { return messages_; }
  // Training begins at `start_step`; checkpoints live in `checkpoint_dir` ("" = none).
  void begin(int64_t start_step, const std::string& checkpoint_dir);

  void on_step(const StepMetrics& m);
  void on_validation(int64_t step, double val_loss);
  void on_checkpoint(int64_t step, int64_t checkpoint_step, double stall_s);
  void add_evaluation_time(double seconds);
  // Agrees on the largest stop signal raised on any rank (0: none) and writes a ledger
  // interval record when one is due (rank 0's clock decides).
  int end_of_step(int local_signal);
  // The end record with `status` ("completed", "stopped: SIGTERM").
  void finish(const std::string& status);
  void fail(const std::string& error);

  double flops_per_token() const { return model_flops_; }
  double mfu() const;  // over the steps run so far
  double hfu() const;
  double goodput() const;  // since job start
  double peak_flops() const { return peak_flops_; }

 private:
  // Collective: every rank's figures, (world, kStats) row-major; `ledger_interval` also
  // closes the NVML mean-power interval.
  std::vector<double> gather_rank_stats(bool ledger_interval);
  double wall_s() const;
  nlohmann::json ledger_record(const std::string& kind, const std::string& status,
                               const std::vector<double>* stats);
  void write_prometheus(const std::vector<double>& stats);
  static void add_routing(nlohmann::json& line, const std::vector<LayerLoad>& moe);

  const proto::TrainConfig& config_;
  LaunchEnv env_;
  Communicator* world_;
  Device compute_;
  bool rank0_;
  std::chrono::steady_clock::time_point job_start_, last_interval_;
  std::chrono::system_clock::time_point job_start_utc_;
  double model_flops_, causal_flops_, hardware_flops_;
  int64_t tokens_per_step_;
  double peak_flops_ = 0;
  std::string peak_source_, device_, job_id_, config_hash_;
  std::vector<std::string> hosts_, messages_;
  std::unique_ptr<NvmlSampler> nvml_;
  std::unique_ptr<MetricsJsonl> metrics_;
  std::unique_ptr<tensorboard::EventFileWriter> tensorboard_;
  std::unique_ptr<ledger::LedgerWriter> ledger_;
  std::vector<nlohmann::json> ledger_records_;  // read at start, until begin()
  std::string checkpoint_dir_;
  int64_t reached_before_ = 0;  // highest step earlier runs of checkpoint_dir_ reached

  // Running totals (rank 0's view of the job).
  GoodputAccount goodput_;
  int64_t steps_ = 0, step_ = 0, tokens_ = 0, job_records_ = 0;
  double step_seconds_ = 0, interval_flops_ = 0, interval_step_s_ = 0;
  std::vector<int64_t> checkpoint_steps_;
  StepMetrics last_;
  bool energy_metered_ = false;  // GPU compute and an NVML meter on every rank
  double last_energy_j_ = 0;     // the job's energy at the last ledger gather
};

}  // namespace peng
