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

#include "core/cuda/memory.h"
#include "tests/util/fault_checks.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

using testing::LayoutCase;

#define PENG_REQUIRE_GPUS(n)                                                               \
  do {                                                                                     \
    if (cuda::device_count() < (n))                                                        \
      GTEST_SKIP() << "needs " << (n) << " CUDA device(s), this node has "                 \
                   << cuda::device_count();                                                \
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
    ::testing::Values(LayoutCase{"gpt2-tiny", 2, {"--dp", "2"}},
                      LayoutCase{"llama-tiny", 2, {"--tp", "2", "--sequence-parallel"}},
                      LayoutCase{"gpt2-deep4",
                                 2,
                                 {"--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages",
                                  "2", "--micro-batch-size", "1"}},
                      LayoutCase{"gpt2-tiny", 4, {"--dp", "4", "--zero", "1"}},
                      LayoutCase{"qwen3-tiny", 4, {"--dp", "4", "--zero", "2"}},
                      LayoutCase{"llama-tiny", 4, {"--dp", "4", "--zero", "3"}},
                      LayoutCase{"gpt2-deep4",
                                 8,
                                 {"--dp", "2", "--tp", "2", "--pp", "2", "--sequence-parallel",
                                  "--zero", "1", "--micro-batch-size", "1", "--pp-schedule",
                                  "interleaved", "--virtual-stages", "2"}}),
    [](const auto& info) {
      return testing::case_name(info.param.name, info.param.np, info.param.flags);
    });

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
