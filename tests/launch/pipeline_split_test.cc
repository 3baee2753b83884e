// Uneven pipeline stages (parallel/pipeline/stage_split.h, --pp-layers, --pp-first/last-
// stage-layers, --pp-balance auto): the reference cases match PyTorch at every step under
// 1/3 and 3/1 splits on 2 stages, with 1F1B, GPipe and with interleaved chunks, for GPT-2,
// Llama and a MoE model; a checkpoint saved under one split resumes under others; the split
// is printed at start; bad splits are one `error:` line naming the flag (every message is
// checked in tests/parallel/stage_split_test.cc; here the ones a job reports).
#include <gtest/gtest.h>

#include "peng/launch/config.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

using Case = testing::LayoutCase;

class PipelineSplitReference : public ::testing::TestWithParam<Case> {};

TEST_P(PipelineSplitReference, MatchesPyTorchEveryStep) {
  testing::expect_case_matches_reference(GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Splits, PipelineSplitReference,
    ::testing::Values(
        Case{"gpt2-deep4", 2, {"--pp", "2", "--micro-batch-size", "2", "--pp-layers", "1,3"}},
        Case{"gpt2-deep4",
             2,
             {"--pp", "2", "--micro-batch-size", "2", "--pp-schedule", "gpipe", "--pp-layers",
              "3,1"}},
        Case{"gpt2-deep4", 2, {"--pp", "2", "--micro-batch-size", "2", "--pp-balance", "auto"}},
        Case{"llama-deep4",
             2,
             {"--pp", "2", "--micro-batch-size", "2", "--pp-first-stage-layers", "1"}},
        Case{"llama-deep4",
             4,
             {"--pp", "2", "--tp", "2", "--micro-batch-size", "2", "--pp-last-stage-layers", "1"}},
        Case{"moe-noaux4", 2, {"--pp", "2", "--micro-batch-size", "2", "--pp-layers", "3,1"}}),
    [](const auto& info) {
      return testing::case_name(info.param.name, info.param.np, info.param.flags);
    });

// Interleaved chunks of uneven size: a 6-layer model (no reference has 6 layers: the
// single-process run is the reference) as 2,1,1,2 over 2 ranks x 2 virtual stages, and
// --pp-balance auto, match one process.
TEST(PipelineSplit, InterleavedUnevenChunksMatchOneProcess) {
  const auto tokens = testing::source_dir() / "tests/reference/gpt2-deep4/tokens.bin";
  testing::TempDir tmp;
  const auto run = [&](int np, const std::vector<std::string>& flags, const std::string& out) {
    const testing::CommandResult r =
        testing::run_case({"", np, {}}, testing::joined({"train",
                                                         "--data",
                                                         tokens.string(),
                                                         "--n-layer",
                                                         "6",
                                                         "--n-head",
                                                         "4",
                                                         "--n-embd",
                                                         "32",
                                                         "--vocab-size",
                                                         "128",
                                                         "--seq-len",
                                                         "16",
                                                         "--batch-size",
                                                         "8",
                                                         "--steps",
                                                         "4",
                                                         "--lr",
                                                         "3e-3",
                                                         "--quiet",
                                                         "--micro-batch-size",
                                                         "2",
                                                         "--metrics-jsonl",
                                                         out},
                                                        flags));
    EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
    std::vector<double> loss, norm;
    testing::read_metrics_jsonl(out, loss, norm);
    return std::make_pair(loss, norm);
  };
  const auto one = run(1, {}, (tmp / "1.jsonl").string());
  ASSERT_EQ(one.first.size(), 4u);
  for (const std::vector<std::string>& split :
       {std::vector<std::string>{"--pp-layers", "2,1,1,2"}, {"--pp-balance", "auto"}}) {
    const auto chunks =
        run(2,
            testing::joined({"--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2"},
                            split),
            (tmp / "2.jsonl").string());
    ASSERT_EQ(chunks.first.size(), one.first.size()) << split[1];
    for (size_t i = 0; i < one.first.size(); ++i) {
      EXPECT_NEAR(chunks.first[i], one.first[i], 1e-6 * one.first[i]) << split[1] << " step " << i;
      EXPECT_NEAR(chunks.second[i], one.second[i], 1e-5 * one.second[i])
          << split[1] << " step " << i;
    }
  }
}

TEST(PipelineSplit, CheckpointResumesUnderAnotherSplit) {
  const testing::ReferenceRun ref = testing::load_reference_run("gpt2-deep4");
  testing::expect_resumes_match_reference(
      ref, {"gpt2-deep4", 2, {"--pp", "2", "--micro-batch-size", "2", "--pp-layers", "1,3"}},
      {{"gpt2-deep4", 2, {"--pp", "2", "--micro-batch-size", "2", "--pp-layers", "3,1"}},
       {"gpt2-deep4", 1, {"--micro-batch-size", "2"}},
       {"gpt2-deep4", 2, {"--pp", "2", "--micro-batch-size", "2", "--pp-balance", "auto"}}});
}

TEST(PipelineSplit, PrintedAtStartAndBadSplitsAreOneError) {
  const testing::ReferenceRun ref = testing::load_reference_run("gpt2-deep4");
  const auto train = [&](const std::vector<std::string>& flags) {
    return testing::run_mpi_peng(
        2, testing::joined(testing::joined({"train"}, ref.train_args(1)),
                           testing::joined({"--pp", "2", "--micro-batch-size", "2"}, flags)));
  };
  testing::CommandResult r = train({"--pp-layers", "1,3"});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("pipeline stages: layers 1,3"), std::string::npos) << r.stdout_text;
  for (const auto& [flags, says] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--pp-layers", "1,2"}, "parallel.pp_layers '1,2' holds 3 layers, the model has 4"},
           {{"--pp-layers", "1,3", "--pp-balance", "auto"}, "give at most one of"},
           {{"--pp-first-stage-layers", "4"}, "leaves 0 for 1 other stages"}}) {
    r = train(flags);
    EXPECT_NE(r.exit_code, 0);
    const std::vector<std::string> e = testing::error_lines(r.stderr_text);
    ASSERT_FALSE(e.empty()) << r.stderr_text;
    EXPECT_NE(e[0].find(says), std::string::npos) << e[0];
  }
}

TEST(PipelineSplit, ConfigIsChecked) {
  const auto message = [](const std::string& field, const std::string& value) {
    return testing::input_error_of([&] {
      validate_train_config(build_train_config("", {"parallel." + field + "=" + value}));
    });
  };
  EXPECT_EQ(message("pp_balance", "best"),
            "parallel.pp_balance (--pp-balance) must be even or auto, got \"best\"");
  EXPECT_EQ(message("pp_balance", "auto"), "");
  EXPECT_NE(testing::input_error_of([] {
              validate_train_config(build_train_config(
                  "", {"parallel.pp_layers=1,3", "parallel.pp_last_stage_layers=1"}));
            }).find("give at most one of"),
            std::string::npos);
  EXPECT_EQ(testing::input_error_of([] {
              validate_train_config(build_train_config("", {"checkpoint.direct_io=sometimes"}));
            }),
            "checkpoint.direct_io (--checkpoint-direct-io) must be auto or off, got \"sometimes\"");
}

}  // namespace
}  // namespace peng
