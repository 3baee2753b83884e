// Multi-rank communication settings on the CPU backend (real ranks under mpirun):
// - --comm staged is what a CPU job's tensor mesh already is (MPI; host tensors pass through
//   the staged communicator): bit-identical to the default, and the device line says so;
//   every step line carries the gradient buckets' communication time (bucket_comm_s);
// - --grad-reduce-dtype bf16 tracks the fp32 reduction within one bf16 rounding of the
//   gradients while differing from it (the narrowing happens), and leaves the first step's
//   loss (computed before any reduction) untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/util/test_util.h"

namespace peng {
namespace {

using testing::joined;

const testing::LayoutCase kDp2{"gpt2-tiny", 2, {"--dp", "2"}};

// The reference case trained under kDp2 with `flags`; its metrics JSONL and its output.
testing::CommandResult train(const testing::TempDir& tmp, const std::string& jsonl,
                             const std::vector<std::string>& flags) {
  const testing::ReferenceRun ref = testing::load_reference_run(kDp2.name);
  return testing::run_case(
      kDp2, joined(joined({"train"}, ref.train_args()),
                   joined(joined(kDp2.flags, flags), {"--metrics-jsonl", (tmp / jsonl).string()})));
}

TEST(Comm, StagedIsTheCpuDefaultBitForBit) {
  testing::TempDir tmp;
  const testing::CommandResult a = train(tmp, "auto.jsonl", {});
  ASSERT_EQ(a.exit_code, 0) << a.stderr_text;
  const testing::CommandResult s = train(tmp, "staged.jsonl", {"--comm", "staged"});
  ASSERT_EQ(s.exit_code, 0) << s.stderr_text;
  EXPECT_NE(s.stdout_text.find("device: cpu | precision fp32 | tensors over MPI"),
            std::string::npos)
      << s.stdout_text;
  const auto want = testing::raw_step_metrics(tmp / "auto.jsonl");
  EXPECT_EQ(want.size(), size_t(testing::load_reference_run(kDp2.name).steps));
  EXPECT_EQ(testing::raw_step_metrics(tmp / "staged.jsonl"), want);
  std::ifstream in(tmp / "staged.jsonl");
  int steps = 0;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (!j.contains("loss")) continue;
    ++steps;
    ASSERT_TRUE(j.contains("bucket_comm_s")) << line;
    EXPECT_GT(j["bucket_comm_s"].get<double>(), 0) << line;
  }
  EXPECT_EQ(steps, int(want.size()));
}

// Each rank's gradient element is rounded to bf16 (relative error <= 2^-9), the pairwise sum
// is taken in f32 and rounded again (<= 2^-9): every reduced element is within 2^-8 of the
// f32 reduction's, relatively, and so is the gradient norm. The losses move by the effect of
// those gradients on the updates: within 1e-3 over the reference's steps.
TEST(GradReduceDtype, Bf16TracksFp32WithinOneBf16Rounding) {
  testing::TempDir tmp;
  const testing::CommandResult f = train(tmp, "fp32.jsonl", {"--quiet"});
  ASSERT_EQ(f.exit_code, 0) << f.stderr_text;
  const testing::CommandResult b =
      train(tmp, "bf16.jsonl", {"--grad-reduce-dtype", "bf16", "--quiet"});
  ASSERT_EQ(b.exit_code, 0) << b.stderr_text;
  std::vector<double> loss32, norm32, loss16, norm16;
  testing::read_metrics_jsonl(tmp / "fp32.jsonl", loss32, norm32);
  testing::read_metrics_jsonl(tmp / "bf16.jsonl", loss16, norm16);
  ASSERT_EQ(loss16.size(), loss32.size());
  ASSERT_GE(loss32.size(), 2u);
  EXPECT_EQ(loss16[0], loss32[0]) << "the first forward precedes every reduction";
  bool differs = false;
  for (size_t s = 0; s < loss32.size(); ++s) {
    EXPECT_LE(std::abs(norm16[s] - norm32[s]), std::ldexp(norm32[s], -8)) << "step " << s;
    EXPECT_LE(std::abs(loss16[s] - loss32[s]), 1e-3) << "step " << s;
    differs = differs || norm16[s] != norm32[s];
  }
  EXPECT_TRUE(differs) << "bf16 reduction gave the fp32 gradient norms bit for bit";
}

}  // namespace
}  // namespace peng
