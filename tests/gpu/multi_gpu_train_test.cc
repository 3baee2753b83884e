// Multi-rank `peng train --device cuda` (label gpu; skips without a GPU; one GPU is enough for
// most): the PyTorch reference cases in fp32 within DESIGN.md's tolerances at every step,
// - over the staged path (--comm staged): 2, 4 and 8 ranks sharing the node's GPUs under dp 2,
//   tp 2 with sequence parallelism, pp 2 interleaved, ZeRO 1, 2 and 3, and dp 2 x tp 2 x pp 2;
// - over NCCL: one rank with every group of size 1 (an explicit --comm nccl builds them), and
//   dp 2 where the node has a GPU per rank (skipped with the reason otherwise);
// and the fault checks (tests/util/fault_checks.h) under the staged path and NCCL.
// Their CPU forms: tests/launch/reference_training_test.cc, zero3_test.cc, fault_test.cc
// (a CPU job's tensor mesh is the staged communicator: tests/launch/comm_test.cc).
#include <gtest/gtest.h>

#include <cmath>

#include "peng/core/cuda/memory.h"
#include "tests/util/fault_checks.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

using testing::LayoutCase;

#define PENG_REQUIRE_GPUS(n)                                               \
  do {                                                                     \
    if (cuda::device_count() < (n))                                        \
      GTEST_SKIP() << "needs " << (n) << " CUDA device(s), this node has " \
                   << cuda::device_count();                                \
  } while (0)

const std::vector<std::string> kStaged = {"--device", "cuda", "--comm", "staged"};
const std::vector<std::string> kNccl = {"--device", "cuda", "--comm", "nccl"};

class StagedOnOneGpu : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(StagedOnOneGpu, MatchesPyTorchEveryStep) {
  PENG_REQUIRE_GPUS(1);
  testing::expect_case_matches_reference(GetParam(), kStaged);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, StagedOnOneGpu,
    ::testing::Values(
        LayoutCase{"gpt2-tiny", 2, {"--dp", "2"}},
        LayoutCase{"llama-tiny", 2, {"--tp", "2", "--sequence-parallel"}},
        LayoutCase{"gpt2-deep4",
                   2,
                   {"--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2",
                    "--micro-batch-size", "1"}},
        LayoutCase{"gpt2-tiny", 4, {"--dp", "4", "--zero", "1"}},
        LayoutCase{"qwen3-tiny", 4, {"--dp", "4", "--zero", "2"}},
        LayoutCase{"llama-tiny", 4, {"--dp", "4", "--zero", "3"}},
        // Per-layer gradients accumulated over micro-batches on the device.
        LayoutCase{"qwen3-tiny", 2, {"--dp", "2", "--zero", "2", "--micro-batch-size", "1"}},
        LayoutCase{"llama-tiny", 2, {"--dp", "2", "--zero", "3", "--micro-batch-size", "1"}},
        LayoutCase{
            "gpt2-deep4",
            8,
            {"--dp", "2", "--tp", "2", "--pp", "2", "--sequence-parallel", "--zero", "1",
             "--micro-batch-size", "1", "--pp-schedule", "interleaved", "--virtual-stages", "2"}}),
    [](const auto& info) {
      return testing::case_name(info.param.name, info.param.np, info.param.flags);
    });

// --grad-reduce-dtype bf16 on the device under ZeRO 2 with micro-batching: within one bf16
// rounding (2^-8) of the fp32 reduction's gradient norms (tests/launch/comm_test.cc's bound).
TEST(StagedBf16Reduction, TracksFp32WithinOneBf16Rounding) {
  PENG_REQUIRE_GPUS(1);
  const LayoutCase c{"qwen3-tiny", 2, {"--dp", "2", "--zero", "2", "--micro-batch-size", "1"}};
  const testing::ReferenceRun ref = testing::load_reference_run(c.name);
  testing::TempDir tmp;
  std::vector<double> loss[2], norm[2];
  for (int bf16 = 0; bf16 < 2; ++bf16) {
    const std::string jsonl = (tmp / (bf16 ? "bf16.jsonl" : "fp32.jsonl")).string();
    const testing::CommandResult r = testing::run_case(
        c, testing::joined(testing::joined({"train"}, ref.train_args()),
                           testing::joined(testing::joined(c.flags, kStaged),
                                           {"--quiet", "--metrics-jsonl", jsonl,
                                            "--grad-reduce-dtype", bf16 ? "bf16" : "fp32"})));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    testing::read_metrics_jsonl(jsonl, loss[bf16], norm[bf16]);
  }
  ASSERT_EQ(norm[1].size(), norm[0].size());
  for (size_t s = 0; s < norm[0].size(); ++s) {
    EXPECT_LE(std::abs(norm[1][s] - norm[0][s]), std::ldexp(norm[0][s], -8)) << "step " << s;
    EXPECT_LE(std::abs(loss[1][s] - loss[0][s]), 1e-3) << "step " << s;
  }
}

TEST(NcclTraining, OneRankWithGroupsOfOne) {
  PENG_REQUIRE_GPUS(1);
  testing::expect_case_matches_reference(LayoutCase{"llama-tiny", 1, {}}, kNccl);
}

TEST(NcclTraining, DataParallelOnTwoGpus) {
  PENG_REQUIRE_GPUS(2);
  testing::expect_case_matches_reference(LayoutCase{"gpt2-tiny", 2, {"--dp", "2"}}, kNccl);
}

TEST(MultiGpuFault, KilledRankEndsTheStagedJob) {
  PENG_REQUIRE_GPUS(1);
  testing::expect_killed_rank_ends_the_job(kStaged);
}

TEST(MultiGpuFault, HungRankIsNamedUnderTheStagedPath) {
  PENG_REQUIRE_GPUS(1);
  testing::expect_hung_rank_named(kStaged);
}

TEST(MultiGpuFault, KilledRankEndsTheNcclJob) {
  PENG_REQUIRE_GPUS(3);  // the fault job runs 3 ranks, one GPU each
  testing::expect_killed_rank_ends_the_job(kNccl);
}

TEST(MultiGpuFault, HungRankIsNamedUnderNccl) {
  PENG_REQUIRE_GPUS(3);
  testing::expect_hung_rank_named(kNccl);
}

}  // namespace
}  // namespace peng
