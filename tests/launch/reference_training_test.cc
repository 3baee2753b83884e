// The numerics contract: peng's single-process fp32 training reproduces the PyTorch
// float64 reference runs in ../shared/reference step by step (loss 1e-4 relative,
// gradient norm 1e-3 relative), with and without micro-batching, in-process and through
// the `peng train` command line with its metrics JSONL.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "peng/launch/config.h"
#include "peng/launch/trainer.h"
#include "peng/models/gpt2/hf_checkpoint.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

using nlohmann::json;
using testing::reference_dir;

using testing::ReferenceRun;
proto::TrainConfig reference_config(const ReferenceRun& e, int micro) {
  proto::TrainConfig c = parse_train_args(e.train_args());
  c.mutable_training()->set_micro_batch_size(micro);
  c.mutable_logging()->set_quiet(true);
  return c;
}

class ReferenceTraining : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(ReferenceTraining, MatchesPyTorchEveryStep) {
  const auto& [name, micro] = GetParam();
  ReferenceRun e = testing::load_reference_run(name);
  TrainReport r = train(reference_config(e, micro));
  std::vector<double> loss, norm;
  for (const auto& s : r.steps) {
    loss.push_back(s.loss);
    norm.push_back(s.grad_norm);
  }
  testing::expect_matches_reference(e, loss, norm);
}

// micro 0 = the whole batch at once; gpt2-tiny has B = 4, gpt2-small-odd B = 6.
INSTANTIATE_TEST_SUITE_P(
    Cases, ReferenceTraining,
    ::testing::Values(std::make_tuple("gpt2-tiny", 0), std::make_tuple("gpt2-tiny", 1),
                      std::make_tuple("gpt2-tiny", 2), std::make_tuple("gpt2-small-odd", 0),
                      std::make_tuple("gpt2-small-odd", 2), std::make_tuple("gpt2-small-odd", 3)),
    [](const auto& info) {
      std::string n = std::get<0>(info.param);
      for (char& ch : n) ch = ch == '-' ? '_' : ch;
      return n + "_micro" + std::to_string(std::get<1>(info.param));
    });

// Data parallelism under mpirun: every dp size, micro-batching, ZeRO stage and bucket size
// (tiny buckets: many buckets, one padded for the reduce-scatter) reproduces the reference.
struct DpCase {
  std::string name;
  int np, micro, zero;
  std::string bucket_mb;  // "" = default (25 MB: one bucket)
  int tp = 1;             // dp = np / (tp * pp)
  bool sp = false;        // sequence parallelism
  int pp = 1;
  std::string schedule = "1f1b";
  int v = 1;  // virtual stages
  int dp() const { return np / (tp * pp); }
};

void PrintTo(const DpCase& c, std::ostream* os) {
  *os << c.name << " dp " << c.dp() << " tp " << c.tp << " micro " << c.micro << " zero " << c.zero
      << " bucket_mb " << (c.bucket_mb.empty() ? "default" : c.bucket_mb)
      << (c.sp ? " sequence parallel" : "") << " pp " << c.pp << " " << c.schedule << " v " << c.v;
}

std::vector<std::string> dp_args(const DpCase& c, const ReferenceRun& e,
                                 const std::filesystem::path& jsonl) {
  std::vector<std::string> args = {"train"};
  for (auto& a : e.train_args()) args.push_back(a);
  args.insert(args.end(), {"--metrics-jsonl", jsonl.string(), "--micro-batch-size",
                           std::to_string(c.micro), "--dp", std::to_string(c.dp()), "--tp",
                           std::to_string(c.tp), "--zero", std::to_string(c.zero), "--quiet"});
  if (!c.bucket_mb.empty()) args.insert(args.end(), {"--bucket-mb", c.bucket_mb});
  if (c.sp) args.push_back("--sequence-parallel");
  if (c.pp > 1 || c.v > 1) {
    args.insert(args.end(), {"--pp", std::to_string(c.pp), "--pp-schedule", c.schedule,
                             "--virtual-stages", std::to_string(c.v)});
  }
  return args;
}

class ReferenceDataParallel : public ::testing::TestWithParam<DpCase> {};

TEST_P(ReferenceDataParallel, MatchesPyTorchEveryStep) {
  const DpCase& c = GetParam();
  ReferenceRun e = testing::load_reference_run(c.name);
  testing::TempDir tmp;
  testing::CommandResult r = testing::run_mpi_peng(c.np, dp_args(c, e, tmp / "m.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  const std::string layout =
      "dp " + std::to_string(c.dp()) + ", tp " + std::to_string(c.tp) + (c.sp ? " sp" : "") +
      ", pp " + std::to_string(c.pp) + (c.pp > 1 || c.v > 1 ? " " + c.schedule : "") +
      (c.v > 1 ? " v" + std::to_string(c.v) : "") + ", zero " + std::to_string(c.zero);
  EXPECT_NE(r.stdout_text.find(layout), std::string::npos) << r.stdout_text;
  std::vector<double> loss, norm;
  testing::read_metrics_jsonl(tmp / "m.jsonl", loss, norm);
  testing::expect_matches_reference(e, loss, norm);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ReferenceDataParallel,
    ::testing::Values(
        DpCase{"gpt2-tiny", 2, 0, 0, ""}, DpCase{"gpt2-tiny", 2, 1, 0, "0.01"},
        DpCase{"gpt2-tiny", 4, 0, 0, ""}, DpCase{"gpt2-tiny", 2, 0, 1, "0.01"},
        DpCase{"gpt2-tiny", 2, 1, 1, ""}, DpCase{"gpt2-tiny", 4, 0, 1, ""},
        DpCase{"gpt2-tiny", 2, 1, 2, "0.01"}, DpCase{"gpt2-tiny", 4, 0, 2, ""},
        DpCase{"gpt2-small-odd", 2, 0, 0, ""}, DpCase{"gpt2-small-odd", 2, 1, 0, "0.003"},
        DpCase{"gpt2-small-odd", 3, 0, 0, ""}, DpCase{"gpt2-small-odd", 2, 1, 1, "0.003"},
        DpCase{"gpt2-small-odd", 3, 1, 2, "0.003"}, DpCase{"gpt2-small-odd", 3, 0, 2, ""},
        // tensor parallelism, alone and with dp, micro-batching and ZeRO
        DpCase{"gpt2-tiny", 2, 0, 0, "", 2}, DpCase{"gpt2-tiny", 2, 1, 0, "", 2},
        DpCase{"gpt2-tiny", 4, 0, 0, "", 4}, DpCase{"gpt2-tiny", 4, 1, 0, "0.01", 2},
        DpCase{"gpt2-tiny", 4, 0, 1, "0.01", 2}, DpCase{"gpt2-tiny", 4, 1, 2, "", 2},
        DpCase{"gpt2-small-odd", 3, 0, 0, "", 3}, DpCase{"gpt2-small-odd", 3, 2, 0, "", 3},
        // sequence parallelism
        DpCase{"gpt2-tiny", 2, 0, 0, "", 2, true}, DpCase{"gpt2-tiny", 4, 1, 1, "0.01", 2, true},
        DpCase{"gpt2-tiny", 4, 0, 2, "", 4, true}, DpCase{"gpt2-small-odd", 3, 1, 0, "", 3, true},
        // pipeline parallelism: each schedule, and with tp, dp, ZeRO, sp
        DpCase{"gpt2-tiny", 2, 1, 0, "", 1, false, 2, "gpipe"},
        DpCase{"gpt2-tiny", 2, 1, 0, "", 1, false, 2, "1f1b"},
        DpCase{"gpt2-small-odd", 2, 2, 0, "", 1, false, 2, "1f1b"},
        DpCase{"gpt2-deep4", 2, 1, 0, "", 1, false, 2, "interleaved", 2},
        DpCase{"gpt2-deep4", 4, 2, 0, "", 1, false, 4, "1f1b"},
        DpCase{"gpt2-tiny", 4, 1, 0, "", 2, false, 2, "1f1b"},
        DpCase{"gpt2-tiny", 4, 1, 1, "0.01", 1, false, 2, "1f1b"},
        DpCase{"gpt2-deep4", 4, 1, 2, "", 1, false, 2, "interleaved", 2},
        DpCase{"gpt2-deep4", 8, 1, 1, "", 2, true, 2, "interleaved", 2}),
    [](const auto& info) {
      const DpCase& c = info.param;
      std::string n = c.name;
      for (char& ch : n) ch = ch == '-' ? '_' : ch;
      return n + "_dp" + std::to_string(c.dp()) + "_tp" + std::to_string(c.tp) + "_micro" +
             std::to_string(c.micro) + "_zero" + std::to_string(c.zero) +
             (c.bucket_mb.empty() ? "" : "_smallbuckets") + (c.sp ? "_sp" : "") +
             (c.pp > 1 || c.v > 1
                  ? "_pp" + std::to_string(c.pp) + "_" + c.schedule + "_v" + std::to_string(c.v)
                  : "");
    });

// ZeRO 1, 2 and 3 change only the order of the gradient sums: every step's loss and grad
// norm agree with ZeRO 0 far inside the reference tolerance.
TEST(ReferenceDataParallelZero, AgreesWithZeroStage0) {
  ReferenceRun e = testing::load_reference_run("gpt2-tiny");
  testing::TempDir tmp;
  std::vector<double> loss[4], norm[4];
  for (int zero = 0; zero <= 3; ++zero) {
    DpCase c{"gpt2-tiny", 2, 1, zero, "0.01"};
    std::string file = "zero";
    file += std::to_string(zero);
    const auto jsonl = tmp / (file + ".jsonl");
    testing::CommandResult r = testing::run_mpi_peng(2, dp_args(c, e, jsonl));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    testing::read_metrics_jsonl(jsonl, loss[zero], norm[zero]);
    ASSERT_EQ(loss[zero].size(), e.loss.size());
  }
  for (int zero = 1; zero <= 3; ++zero) {
    for (size_t s = 0; s < loss[0].size(); ++s) {
      EXPECT_NEAR(loss[zero][s], loss[0][s], 1e-6 * std::abs(loss[0][s]))
          << "zero " << zero << " step " << s;
      EXPECT_NEAR(norm[zero][s], norm[0][s], 1e-5 * std::abs(norm[0][s]))
          << "zero " << zero << " step " << s;
    }
  }
}

TEST(ReferenceDataParallelErrors, BadLayoutsAreRefusedOnEveryRank) {
  ReferenceRun e = testing::load_reference_run("gpt2-small-odd");  // B = 6
  std::vector<std::string> args = {"train"};
  for (auto& a : e.train_args()) args.push_back(a);
  args.push_back("--quiet");
  testing::CommandResult r = testing::run_mpi_peng(4, args);  // 6 % 4 != 0
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(
      r.stderr_text.find("error: training.batch_size (6) is not divisible by parallel.dp (4)"),
      std::string::npos)
      << r.stderr_text;
  std::vector<std::string> tp_args = args;
  tp_args.insert(tp_args.end(), {"--tp", "2"});
  r = testing::run_mpi_peng(2, tp_args);  // 3 heads
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("error: model.n_head (3) is not divisible by parallel.tp (2)"),
            std::string::npos)
      << r.stderr_text;
  for (const auto& [extra, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2"},
            "error: model.n_layer (2) is less than pp x virtual stages (2 x 2)"},
           {{"--pp", "2"},  // micro-batch = batch: 1 micro-batch
            "error: parallel.pp_schedule 1f1b needs at least pp (2) micro-batches, got 1"},
           {{"--pp", "2", "--virtual-stages", "2"},
            "error: parallel.virtual_stages (2) > 1 needs parallel.pp_schedule interleaved"},
           {{"--pp", "2", "--pp-schedule", "zigzag"}, "error: parallel.pp_schedule"}}) {
    std::vector<std::string> pp_args = args;
    pp_args.insert(pp_args.end(), extra.begin(), extra.end());
    r = testing::run_mpi_peng(2, pp_args);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.stderr_text.find(message), std::string::npos) << r.stderr_text;
  }
  args.push_back("--dp");
  args.push_back("3");
  r = testing::run_mpi_peng(2, args);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("error: world size 2 != dp x tp x pp = 3 x 1 x 1"),
            std::string::npos)
      << r.stderr_text;
}

// The first text sample a run prints.
std::string first_sample(const std::string& stdout_text) {
  const size_t at = stdout_text.find("sample at step 1:\n");
  if (at == std::string::npos) return "";
  const size_t begin = stdout_text.find('\n', at) + 1;
  return stdout_text.substr(begin, stdout_text.find("\n---", begin) - begin);
}

// With lr 0 the exported model is the initial one: the shards of every tensor (c_attn's
// q | k | v blocks included) are gathered back exactly over tp, and the stages over pp.
// Sampling runs over tp and through pipelines; pipeline stages compute exactly what one
// process does, so their sample is the single-process one.
TEST(ReferenceModelParallel, ExportGathersShardsAndStagesAndSamples) {
  ReferenceRun e = testing::load_reference_run("gpt2-deep4");
  std::vector<std::string> base = {"train"};
  for (auto& a : e.train_args(2)) base.push_back(a);
  *(std::find(base.begin(), base.end(), "--lr") + 1) = "0";
  base.insert(base.end(), {"--log-every", "1", "--sample-every", "1", "--sample-tokens", "8"});
  testing::CommandResult single = testing::run_peng(base);
  ASSERT_EQ(single.exit_code, 0) << single.stderr_text;
  const std::string reference_sample = first_sample(single.stdout_text);
  ASSERT_FALSE(reference_sample.empty()) << single.stdout_text;
  const std::vector<std::pair<int, std::vector<std::string>>> layouts = {
      {2, {"--tp", "2"}},
      {2, {"--pp", "2", "--micro-batch-size", "4"}},
      {4,
       {"--tp", "2", "--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2",
        "--micro-batch-size", "2", "--sequence-parallel"}}};
  for (const auto& [np, layout] : layouts) {
    testing::TempDir tmp;
    std::vector<std::string> args = base;
    args.insert(args.end(), {"--export-to", (tmp / "out").string()});
    args.insert(args.end(), layout.begin(), layout.end());
    testing::CommandResult r = testing::run_mpi_peng(np, args);
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_NE(r.stdout_text.find("sample at step 2"), std::string::npos) << r.stdout_text;
    if (layout[0] == "--pp") EXPECT_EQ(first_sample(r.stdout_text), reference_sample);
    const auto dir = testing::source_dir() / "tests" / "reference" / "gpt2-deep4";
    const Gpt2Config cfg = read_hf_gpt2_config(dir);
    auto before = load_hf_gpt2(dir, cfg), after = load_hf_gpt2(tmp / "out", cfg);
    ASSERT_EQ(before.size(), after.size());
    for (const auto& [name, t] : before) {
      const Tensor& u = after.at(name);
      ASSERT_EQ(u.shape(), t.shape()) << name;
      for (int64_t i = 0; i < t.numel(); ++i) {
        ASSERT_EQ(u.data<float>()[i], t.data<float>()[i]) << name << " [" << i << "]";
      }
    }
  }
}

TEST(ReferenceTrainingCli, MetricsJsonlMatchesReference) {
  for (const std::string name : {"gpt2-tiny", "gpt2-small-odd"}) {
    ReferenceRun e = testing::load_reference_run(name);
    testing::TempDir tmp;
    std::vector<std::string> args = {"train"};
    for (auto& a : e.train_args()) args.push_back(a);
    args.push_back("--metrics-jsonl");
    args.push_back((tmp / "metrics.jsonl").string());
    testing::CommandResult r = testing::run_peng(args);
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_NE(r.stdout_text.find("done:"), std::string::npos) << r.stdout_text;
    std::istringstream lines(testing::read_file(tmp / "metrics.jsonl"));
    std::string line;
    std::vector<double> loss, norm;
    while (std::getline(lines, line)) {
      json j = json::parse(line);
      if (!j.contains("loss")) continue;
      EXPECT_EQ(j["step"].get<size_t>(), loss.size());
      for (const char* key : {"lr", "tokens_per_s"}) EXPECT_TRUE(j.contains(key)) << key;
      EXPECT_DOUBLE_EQ(j["lr"].get<double>(), float(e.lr));
      loss.push_back(j["loss"]);
      norm.push_back(j["grad_norm"]);
    }
    testing::expect_matches_reference(e, loss, norm);
  }
}

}  // namespace
}  // namespace peng
