// Resuming training from a checkpoint: bit-exact under the same layout (synchronous and
// asynchronous saves), and within the reference tolerance after resharding between
// dp 2, tp 2, pp 2, dp2 x tp2 x pp2 (ZeRO 1) and a single process, under mpirun.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "peng/checkpoint/store.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using testing::ReferenceRun;

struct StepMetrics {
  double loss, grad_norm;
};
// Step -> loss and gradient norm of a metrics JSONL.
std::map<int64_t, StepMetrics> step_metrics(const fs::path& p) {
  std::map<int64_t, StepMetrics> out;
  std::istringstream lines(testing::read_file(p));
  std::string line;
  while (std::getline(lines, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) {
      out[j.at("step").get<int64_t>()] = {j.at("loss").get<double>(),
                                          j.at("grad_norm").get<double>()};
    }
  }
  return out;
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& more) {
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

// `peng train` with a reference run's flags for `steps` steps (its own count when < 0).
std::vector<std::string> train(const ReferenceRun& ref, int steps = -1) {
  return with({"train"}, ref.train_args(steps));
}

void expect_identical(const std::map<int64_t, StepMetrics>& resumed,
                      const std::map<int64_t, StepMetrics>& straight, int64_t from, int64_t to) {
  ASSERT_EQ(resumed.size(), size_t(to - from));
  for (int64_t s = from; s < to; ++s) {
    ASSERT_TRUE(resumed.count(s)) << "step " << s;
    EXPECT_EQ(resumed.at(s).loss, straight.at(s).loss) << "loss at step " << s;
    EXPECT_EQ(resumed.at(s).grad_norm, straight.at(s).grad_norm) << "grad norm at step " << s;
  }
}

// N steps straight, and k steps + save + a new process resuming to N: identical numbers.
TEST(Resume, BitExactSingleProcessSyncAndAsync) {
  const ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
  testing::TempDir tmp;
  const std::vector<std::string> base = with(train(ref, 10), {"--quiet"});
  ASSERT_EQ(testing::run_peng(with(base, {"--metrics-jsonl", (tmp / "straight.jsonl").string()}))
                .exit_code,
            0);
  const auto straight = step_metrics(tmp / "straight.jsonl");
  for (const bool async : {false, true}) {
    const fs::path dir = tmp / (async ? "async" : "sync");
    std::vector<std::string> first =
        with(train(ref, 4), {"--quiet", "--checkpoint-dir", dir.string(), "--checkpoint-every", "2",
                             "--keep-last", "1"});
    if (async) first.push_back("--async-checkpoint");
    testing::CommandResult a = testing::run_peng(first);
    ASSERT_EQ(a.exit_code, 0) << a.stderr_text;
    // --keep-last 1: only step 4 is left.
    const auto kept = ckpt::committed_checkpoints(dir);
    ASSERT_EQ(kept.size(), 1u);
    EXPECT_EQ(kept[0].first, 4);
    testing::CommandResult b =
        testing::run_peng(with(base, {"--checkpoint-dir", dir.string(), "--metrics-jsonl",
                                      (dir / "resumed.jsonl").string()}));
    ASSERT_EQ(b.exit_code, 0) << b.stderr_text;
    EXPECT_NE(b.stdout_text.find("resumed from " + (dir / "step-00000004").string()),
              std::string::npos)
        << b.stdout_text;
    expect_identical(step_metrics(dir / "resumed.jsonl"), straight, 4, 10);
  }
}

// --resume none ignores the folder; a finished run resumed again has nothing to do.
TEST(Resume, NoneAndNothingLeft) {
  const ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
  testing::TempDir tmp;
  const std::vector<std::string> args =
      with(train(ref, 2), {"--quiet", "--checkpoint-dir", (tmp / "c").string()});
  ASSERT_EQ(testing::run_peng(args).exit_code, 0);
  testing::CommandResult again = testing::run_peng(args);
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.stdout_text.find("nothing to train"), std::string::npos) << again.stdout_text;
  testing::CommandResult fresh = testing::run_peng(with(args, {"--resume", "none"}));
  EXPECT_EQ(fresh.exit_code, 0);
  EXPECT_EQ(fresh.stdout_text.find("resumed"), std::string::npos);
  testing::CommandResult missing =
      testing::run_peng(with(args, {"--resume", (tmp / "nope").string()}));
  EXPECT_NE(missing.exit_code, 0);
  ASSERT_EQ(testing::error_lines(missing.stderr_text).size(), 1u) << missing.stderr_text;
  EXPECT_NE(missing.stderr_text.find("nope"), std::string::npos);
}

struct Layout {
  std::string name;
  int np;
  std::vector<std::string> flags;
};
const std::vector<Layout>& layouts() {
  static const std::vector<Layout> l = {
      {"single", 1, {}},
      {"dp2", 2, {"--dp", "2"}},
      {"tp2", 2, {"--tp", "2"}},
      {"pp2", 2, {"--pp", "2", "--micro-batch-size", "4"}},
      {"dp2tp2pp2_zero1",
       8,
       {"--dp", "2", "--tp", "2", "--pp", "2", "--zero", "1", "--micro-batch-size", "2"}},
  };
  return l;
}
const Layout& layout(const std::string& name) {
  for (const Layout& l : layouts()) {
    if (l.name == name) return l;
  }
  throw std::runtime_error("no layout " + name);
}

testing::CommandResult run_layout(const Layout& l, const std::vector<std::string>& args) {
  return l.np == 1 ? testing::run_peng(args) : testing::run_mpi_peng(l.np, with(args, l.flags));
}

// Saves at step 5 of 10 under `save`, resumes from it under each of `loads`: the full run
// and each resumed tail match the PyTorch reference, and the tails agree with the saving
// run's own steps 5..9 far inside that tolerance.
class Reshard : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(Reshard, ResumedStepsMatchTheReference) {
  const auto& [save_name, load_name] = GetParam();
  const ReferenceRun ref = testing::load_reference_run("gpt2-deep4");
  testing::TempDir tmp;
  const std::vector<std::string> base = with(train(ref), {"--quiet"});
  testing::CommandResult saved = run_layout(
      layout(save_name), with(base, {"--checkpoint-dir", (tmp / "c").string(), "--checkpoint-every",
                                     "5", "--metrics-jsonl", (tmp / "save.jsonl").string()}));
  ASSERT_EQ(saved.exit_code, 0) << saved.stderr_text;
  std::vector<double> loss, norm;
  testing::read_metrics_jsonl(tmp / "save.jsonl", loss, norm);
  testing::expect_matches_reference(ref, loss, norm);

  const fs::path from = tmp / "c" / "step-00000005";
  testing::CommandResult r = run_layout(
      layout(load_name),
      with(base, {"--resume", from.string(), "--metrics-jsonl", (tmp / "load.jsonl").string()}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("resumed from " + from.string() + " at step 5"), std::string::npos)
      << r.stdout_text;
  const auto tail = step_metrics(tmp / "load.jsonl");
  ASSERT_EQ(tail.size(), 5u);
  for (int64_t s = 5; s < 10; ++s) {
    EXPECT_NEAR(tail.at(s).loss, ref.loss[size_t(s)], 1e-4 * ref.loss[size_t(s)]) << "step " << s;
    EXPECT_NEAR(tail.at(s).grad_norm, ref.grad_norm[size_t(s)], 1e-3 * ref.grad_norm[size_t(s)])
        << "step " << s;
    EXPECT_NEAR(tail.at(s).loss, loss[size_t(s)], 1e-6 * loss[size_t(s)]) << "step " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, Reshard,
    ::testing::Values(std::make_tuple("dp2", "tp2"), std::make_tuple("dp2", "single"),
                      std::make_tuple("tp2", "pp2"), std::make_tuple("tp2", "single"),
                      std::make_tuple("pp2", "dp2tp2pp2_zero1"), std::make_tuple("pp2", "single"),
                      std::make_tuple("dp2tp2pp2_zero1", "dp2"),
                      std::make_tuple("dp2tp2pp2_zero1", "single")),
    [](const auto& info) { return std::get<0>(info.param) + "_to_" + std::get<1>(info.param); });

// Same multi-rank layout (ZeRO 1 over dp 2, tp 2): the resumed steps are bit-identical to
// the run that saved.
TEST(Resume, BitExactUnderMpiSameLayout) {
  const ReferenceRun ref = testing::load_reference_run("gpt2-deep4");
  testing::TempDir tmp;
  const std::vector<std::string> args =
      with(train(ref), {"--quiet", "--dp", "2", "--tp", "2", "--zero", "1"});
  ASSERT_EQ(testing::run_mpi_peng(
                4, with(args, {"--checkpoint-dir", (tmp / "c").string(), "--checkpoint-every", "4",
                               "--metrics-jsonl", (tmp / "a.jsonl").string()}))
                .exit_code,
            0);
  testing::CommandResult r =
      testing::run_mpi_peng(4, with(args, {"--resume", (tmp / "c" / "step-00000004").string(),
                                           "--metrics-jsonl", (tmp / "b.jsonl").string()}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  expect_identical(step_metrics(tmp / "b.jsonl"), step_metrics(tmp / "a.jsonl"), 4, 10);
}

}  // namespace
}  // namespace peng
