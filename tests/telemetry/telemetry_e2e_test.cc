// End to end: a two-rank training job under mpirun with every telemetry sink on, then a
// resumed job that repeats steps, checked through the files they leave: the metrics JSONL
// (MFU, HFU, breakdown), the Prometheus textfile, the TensorBoard event file, the usage
// ledger (hash chain and HMAC) and `peng report` over it.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "peng/accounting/ledger.h"
#include "peng/telemetry/tensorboard/event_file.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<json> json_lines(const fs::path& p) {
  std::vector<json> out;
  std::istringstream lines(testing::read_file(p));
  std::string line;
  while (std::getline(lines, line)) out.push_back(json::parse(line));
  return out;
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& more) {
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

class TelemetryJob : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const testing::ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
    args_ = with({"train"}, ref.train_args(kSteps));
    testing::write_file(*dir_ / "key", "s3cret-ledger-key\n");
    run_ = new testing::CommandResult(testing::run_mpi_peng(2, with(args_, {"--dp",
                                                                            "2",
                                                                            "--quiet",
                                                                            "--metrics-jsonl",
                                                                            path("m.jsonl"),
                                                                            "--tensorboard",
                                                                            path("tb"),
                                                                            "--prometheus-textfile",
                                                                            path("peng.prom"),
                                                                            "--ledger",
                                                                            path("ledger.jsonl"),
                                                                            "--ledger-key",
                                                                            path("key"),
                                                                            "--ledger-every",
                                                                            "0.001",
                                                                            "--project",
                                                                            "coupons-2026",
                                                                            "--checkpoint-dir",
                                                                            path("ckpt"),
                                                                            "--checkpoint-every",
                                                                            "4"})));
  }
  static void TearDownTestSuite() {
    delete run_;
    delete dir_;
  }
  static std::string path(const std::string& name) { return (*dir_ / name).string(); }
  static std::vector<json> ledger() {
    return ledger::read_verified(path("ledger.jsonl"), ledger::read_key_file(path("key")));
  }
  static json accounting_end() { return ledger().back(); }
  static std::vector<json> step_lines() {
    std::vector<json> out;
    for (const json& j : json_lines(path("m.jsonl")))
      if (j.contains("loss")) out.push_back(j);
    return out;
  }

  static constexpr int kSteps = 6;
  static testing::TempDir* dir_;
  static testing::CommandResult* run_;
  static std::vector<std::string> args_;
};
testing::TempDir* TelemetryJob::dir_ = nullptr;
testing::CommandResult* TelemetryJob::run_ = nullptr;
std::vector<std::string> TelemetryJob::args_;

TEST_F(TelemetryJob, PrintsTheFlopsConventionAndTheSummary) {
  ASSERT_EQ(run_->exit_code, 0) << run_->stderr_text;
  EXPECT_NE(run_->stdout_text.find("flops/token:"), std::string::npos) << run_->stdout_text;
  EXPECT_NE(run_->stdout_text.find("PaLM 6N+12LCT"), std::string::npos);
  EXPECT_NE(run_->stdout_text.find("causal-halved (Megatron)"), std::string::npos);
  EXPECT_NE(run_->stdout_text.find("sgemm probe"), std::string::npos);
  EXPECT_NE(run_->stdout_text.find("nvml: not available"), std::string::npos);
  EXPECT_NE(run_->stdout_text.find("| MFU "), std::string::npos);
  EXPECT_NE(run_->stdout_text.find("| goodput "), std::string::npos);
}

TEST_F(TelemetryJob, MetricsCarryMfuHfuAndTheBreakdown) {
  ASSERT_EQ(run_->exit_code, 0) << run_->stderr_text;
  const std::vector<json> steps = step_lines();
  ASSERT_EQ(steps.size(), size_t(kSteps));
  const json end = accounting_end();
  const double peak = end.at("peak_flops").get<double>();
  for (const json& s : steps) {
    const double dt = s.at("step_time_s").get<double>();
    const double tflops = s.at("tflops").get<double>();
    const double mfu = s.at("mfu").get<double>();
    // tflops per device = model FLOP/s of the step / 2 devices; MFU = that / peak.
    EXPECT_NEAR(tflops * 2, s.at("model_tflops").get<double>(), 1e-9 * tflops);
    EXPECT_NEAR(mfu, tflops * 1e12 / peak, 1e-9 * mfu);
    // T = 16 is a single attention block: the kernel executes the whole square, so the
    // hardware FLOPs equal the model FLOPs (flops_test covers longer sequences).
    EXPECT_NEAR(s.at("hfu").get<double>(), mfu, 1e-12);
    double parts = 0;
    for (const char* k : {"data_s", "forward_s", "backward_s", "optimizer_s", "exposed_comm_s"}) {
      EXPECT_GE(s.at(k).get<double>(), 0) << k;
      parts += s.at(k).get<double>();
    }
    EXPECT_GT(s.at("forward_s").get<double>(), 0);
    EXPECT_GT(s.at("backward_s").get<double>(), 0);
    EXPECT_LE(parts, dt * 1.0001) << s.dump();
    EXPECT_GT(s.at("mem_high_water_bytes").get<int64_t>(), 1 << 20);
  }
  const json last = json_lines(path("m.jsonl")).back();
  ASSERT_TRUE(last.contains("goodput")) << last.dump();
  EXPECT_GT(last["goodput"]["goodput"].get<double>(), 0);
  EXPECT_LT(last["goodput"]["goodput"].get<double>(), 1);
  EXPECT_GT(last["goodput"]["lost_s"]["startup"].get<double>(), 0);
  EXPECT_GT(last["goodput"]["lost_s"]["checkpoint"].get<double>(), 0);
}

TEST_F(TelemetryJob, PrometheusTextfileHasJobAndPerRankSeries) {
  ASSERT_EQ(run_->exit_code, 0) << run_->stderr_text;
  const std::string prom = testing::read_file(path("peng.prom"));
  EXPECT_FALSE(fs::exists(path("peng.prom") + ".tmp"));
  EXPECT_NE(prom.find("# TYPE peng_tokens_per_second gauge"), std::string::npos) << prom;
  EXPECT_NE(prom.find("# TYPE peng_tokens_total counter"), std::string::npos);
  EXPECT_NE(prom.find("peng_mfu_ratio{job=\"ompi-"), std::string::npos);
  for (const char* rank : {"rank=\"0\"", "rank=\"1\""}) {
    EXPECT_NE(prom.find(std::string("peng_step_duration_seconds{job=\"ompi-")), std::string::npos);
    EXPECT_NE(prom.find(rank), std::string::npos) << rank;
  }
  EXPECT_NE(prom.find("phase=\"backward\""), std::string::npos);
  // The last write came after the last step: the tokens counter is the job's total.
  const std::string tokens_line = "peng_tokens_total{job=";
  const size_t at = prom.find(tokens_line);
  ASSERT_NE(at, std::string::npos);
  const size_t value_at = prom.find("} ", at) + 2;
  EXPECT_EQ(std::stod(prom.substr(value_at)), double(kSteps * 4 * 16)) << prom.substr(at, 120);
}

TEST_F(TelemetryJob, TensorBoardFileHoldsTheStepScalars) {
  ASSERT_EQ(run_->exit_code, 0) << run_->stderr_text;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(path("tb"))) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_NE(files[0].filename().string().find("tfevents"), std::string::npos);
  const auto scalars = tensorboard::read_scalars(files[0]);
  const std::vector<json> steps = step_lines();
  ASSERT_EQ(scalars.at("train/loss").size(), steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(scalars.at("train/loss")[i].first, int64_t(i));
    EXPECT_FLOAT_EQ(float(scalars.at("train/loss")[i].second), steps[i]["loss"].get<float>());
    EXPECT_FLOAT_EQ(float(scalars.at("perf/mfu")[i].second), steps[i]["mfu"].get<float>());
  }
  for (const char* tag : {"train/lr", "train/grad_norm", "perf/tokens_per_s", "perf/mfu"})
    EXPECT_EQ(scalars.at(tag).size(), steps.size()) << tag;
}

TEST_F(TelemetryJob, LedgerRecordsTheJobAndVerifies) {
  ASSERT_EQ(run_->exit_code, 0) << run_->stderr_text;
  const std::string key = ledger::read_key_file(path("key"));
  const ledger::VerifyResult v = ledger::verify(path("ledger.jsonl"), key);
  ASSERT_TRUE(v.ok) << v.error;
  EXPECT_TRUE(v.hmac_checked);
  EXPECT_FALSE(ledger::verify(path("ledger.jsonl"), "another key").ok);
  const std::vector<json> records = ledger();
  ASSERT_GE(records.size(), 2u);  // intervals (every 1 ms: after each step) and the end
  for (size_t i = 0; i + 1 < records.size(); ++i) {
    EXPECT_EQ(records[i]["kind"], "interval");
    EXPECT_EQ(records[i]["job_record"].get<int64_t>(), int64_t(i));
  }
  const json& end = records.back();
  EXPECT_EQ(end["kind"], "end");
  EXPECT_EQ(end["status"], "completed");
  EXPECT_EQ(end["project"], "coupons-2026");
  EXPECT_EQ(end["devices"].get<int>(), 2);
  EXPECT_EQ(end["hosts"].size(), 1u);
  EXPECT_EQ(end["job"].get<std::string>().rfind("ompi-", 0), 0u) << end["job"];
  EXPECT_EQ(end["steps"].get<int64_t>(), kSteps);
  EXPECT_EQ(end["tokens"].get<int64_t>(), kSteps * 4 * 16);
  EXPECT_EQ(end["config_hash"].get<std::string>().size(), 64u);
  EXPECT_EQ(end["checkpoint_steps"], json::array({4, 6}));
  EXPECT_NEAR(end["device_seconds"].get<double>(), 2 * end["wall_s"].get<double>(), 1e-9);
  EXPECT_TRUE(end["energy_j"].is_null());
  EXPECT_EQ(end["energy_source"], "none");
  EXPECT_GT(end["mfu"].get<double>(), 0);
  EXPECT_GT(end["goodput"].get<double>(), 0);
  EXPECT_LE(end["productive_s"].get<double>(), end["wall_s"].get<double>());
  // model FLOPs = FLOPs/token (tflops of a step x 1e12 x devices / tokens per second) x tokens
  const json step0 = step_lines()[0];
  const double flops_per_token =
      step0["model_tflops"].get<double>() * 1e12 / step0["tokens_per_s"].get<double>();
  EXPECT_NEAR(end["model_flops"].get<double>(), flops_per_token * kSteps * 64,
              1e-6 * end["model_flops"].get<double>());
}

TEST_F(TelemetryJob, ReportTotalsTheLedger) {
  ASSERT_EQ(run_->exit_code, 0) << run_->stderr_text;
  testing::CommandResult r =
      testing::run_peng({"report", path("ledger.jsonl"), "--ledger-key", path("key"), "--verify"});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("ok"), std::string::npos) << r.stdout_text;
  r = testing::run_peng({"report", path("ledger.jsonl"), "--ledger-key", path("key"), "--json",
                         path("report.json"), "--csv", path("report.csv"), "--html",
                         path("report.html")});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  const json report = json::parse(testing::read_file(path("report.json")));
  const json& jobs = report["groups"]["job"];
  ASSERT_EQ(jobs.size(), 1u) << report.dump(1);
  EXPECT_EQ(jobs[0]["tokens"].get<int64_t>(), kSteps * 64);
  EXPECT_NEAR(jobs[0]["device_hours"].get<double>(),
              accounting_end()["device_seconds"].get<double>() / 3600, 1e-9);
  EXPECT_NE(testing::read_file(path("report.csv")).find("job,"), std::string::npos);
  EXPECT_NE(testing::read_file(path("report.html")).find("chart-hours"), std::string::npos);
}

// A job resumed from an earlier checkpoint than the previous run reached repeats steps:
// goodput counts them as lost, and the ledger holds both jobs on one chain.
TEST_F(TelemetryJob, ResumedJobCountsRecomputedSteps) {
  ASSERT_EQ(run_->exit_code, 0) << run_->stderr_text;
  const testing::ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
  testing::CommandResult r = testing::run_mpi_peng(
      2, with(with({"train"}, ref.train_args(kSteps + 2)),
              {"--dp", "2", "--quiet", "--metrics-jsonl", path("resumed.jsonl"), "--ledger",
               path("ledger.jsonl"), "--ledger-key", path("key"), "--checkpoint-dir", path("ckpt"),
               "--resume", path("ckpt") + "/step-00000004"}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  const json last = json_lines(path("resumed.jsonl")).back();
  EXPECT_EQ(last["goodput"]["recomputed_steps"].get<int64_t>(), 2);  // steps 4 and 5 again
  EXPECT_GT(last["goodput"]["lost_s"]["recomputed"].get<double>(), 0);
  const std::vector<json> records = ledger();
  const json& end = records.back();
  EXPECT_EQ(end["steps"].get<int64_t>(), 4);
  EXPECT_EQ(end["step"].get<int64_t>(), kSteps + 2);
  EXPECT_NE(end["job"], records.front()["job"]);
  // Only steps 6 and 7 were new: productive time is less than the job's step time.
  double step_time = 0;
  for (const json& j : json_lines(path("resumed.jsonl")))
    if (j.contains("loss")) step_time += j["step_time_s"].get<double>();
  EXPECT_LT(end["productive_s"].get<double>(), step_time);
  EXPECT_GT(end["productive_s"].get<double>(), 0);
}

// A job that fails still leaves its end record, with the error, for the claim.
TEST(TelemetryFailure, ADivergedJobLeavesAFailedEndRecord) {
  testing::TempDir dir;
  const testing::ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
  const testing::CommandResult r = testing::run_peng(with(
      with({"train"}, ref.train_args(10)), {"--set", "optim.lr=1e30", "--set", "optim.grad_clip=0",
                                            "--quiet", "--ledger", (dir / "l").string()}));
  EXPECT_EQ(r.exit_code, 1);
  ASSERT_EQ(testing::error_lines(r.stderr_text).size(), 1u) << r.stderr_text;
  const std::vector<json> records = ledger::read_verified(dir / "l", "");
  ASSERT_FALSE(records.empty());
  const json& end = records.back();
  EXPECT_EQ(end["kind"], "end");
  EXPECT_EQ(end["status"].get<std::string>().rfind("failed: loss is ", 0), 0u) << end["status"];
  EXPECT_GE(end["steps"].get<int64_t>(), 1);  // the steps before the divergence count
  EXPECT_GT(end["device_seconds"].get<double>(), 0);
}

// Bad telemetry input: one error line naming the flag or file, before any training.
TEST(TelemetryFailure, BadInputNamesIt) {
  testing::TempDir dir;
  const testing::ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
  const auto run = [&](const std::vector<std::string>& flags) {
    const testing::CommandResult r =
        testing::run_peng(with(with({"train"}, ref.train_args(2)), flags));
    EXPECT_EQ(r.exit_code, 1);
    const std::vector<std::string> errors = testing::error_lines(r.stderr_text);
    return errors.size() == 1 ? errors[0] : "not one error line: " + r.stderr_text;
  };
  EXPECT_NE(run({"--peak", "Z80"}).find("one of: A100 SXM"), std::string::npos);
  EXPECT_NE(run({"--peak", "-3"}).find("--peak"), std::string::npos);
  EXPECT_NE(run({"--prometheus-textfile", (dir / "no" / "p.prom").string()}).find("no/p.prom"),
            std::string::npos);
  EXPECT_NE(run({"--ledger", (dir / "l").string(), "--ledger-key", (dir / "none").string()})
                .find((dir / "none").string()),
            std::string::npos);
  EXPECT_NE(run({"--ledger-key", (dir / "k").string()}).find("needs telemetry.ledger"),
            std::string::npos);
  EXPECT_NE(run({"--ledger-every", "0"}).find("telemetry.ledger_every_s"), std::string::npos);
  EXPECT_NE(run({"--set", "telemetry.nvml_period_s=inf"}).find("telemetry.nvml_period_s"),
            std::string::npos);
  testing::write_file(dir / "torn", "{\"seq\":0");
  EXPECT_NE(run({"--ledger", (dir / "torn").string()}).find("torn"), std::string::npos);
}

}  // namespace
}  // namespace peng
