// ZeRO-3 (parallel/data_parallel/param_shards.h): parameters, gradients and AdamW state
// sharded over dp, each layer gathered for its pass. Every reference case matches PyTorch
// under dp 2 and 4, dp 2 x tp 2 with sequence parallelism, dp 2 x pp 2 (a tied embedding
// across stages), interleaved pipelines, micro-batching and recomputation; checkpoints resume
// from ZeRO 3 under ZeRO 0 and the reverse; bad settings are one error line.
// (ZeRO 3 against ZeRO 0 within 1e-6 / 1e-5: reference_training_test.cc; Mixture-of-Experts
// models with expert parallelism under ZeRO 3: moe_reference_test.cc.)
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "peng/models/registry.h"
#include "peng/parallel/data_parallel/param_shards.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using testing::joined;
using testing::ReferenceRun;

using Case = testing::LayoutCase;
using testing::run_case;

class Zero3Reference : public ::testing::TestWithParam<Case> {};

TEST_P(Zero3Reference, MatchesPyTorchEveryStep) {
  testing::expect_case_matches_reference(GetParam(), {"--zero", "3"});
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, Zero3Reference,
    ::testing::Values(
        // a tied head on the embedding's stage: the head gathers the embedding's unit too
        Case{"gpt2-tiny", 2, {"--dp", "2"}},
        Case{"llama-tiny", 4, {"--dp", "4", "--bucket-mb", "0.001"}},
        Case{"qwen3-tiny", 2, {"--dp", "2", "--micro-batch-size", "1", "--zero3-keep-embeddings"}},
        Case{"gpt2-deep4",
             4,
             {"--dp", "2", "--tp", "2", "--sequence-parallel", "--recompute", "full"}},
        // the tied embedding on both stages: its copies' chunks summed and kept alike
        Case{"gpt2-deep4", 4, {"--dp", "2", "--pp", "2", "--micro-batch-size", "2"}},
        Case{"llama-deep4",
             4,
             {"--dp", "2", "--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2",
              "--micro-batch-size", "2", "--recompute", "selective", "--recompute-modules",
              "core_attn,norm"}}),
    [](const auto& info) {
      return testing::case_name(info.param.name, info.param.np, info.param.flags);
    });

// Saved at step 5 under ZeRO 3, resumed under ZeRO 0 (one process, and dp 2), and the
// reverse: the resumed steps are the reference's.
TEST(Zero3Resume, ResumesAcrossZeroStages) {
  const ReferenceRun ref = testing::load_reference_run("gpt2-deep4");
  for (const auto& [save, resumes] : std::vector<std::pair<Case, std::vector<Case>>>{
           {{"", 4, {"--dp", "2", "--pp", "2", "--zero", "3", "--micro-batch-size", "2"}},
            {{"", 1, {}}, {"", 2, {"--dp", "2", "--zero", "0"}}}},
           {{"", 1, {}},
            {{"", 2, {"--dp", "2", "--zero", "3"}},
             {"", 4, {"--dp", "2", "--tp", "2", "--zero", "3", "--micro-batch-size", "2"}}}}}) {
    testing::expect_resumes_match_reference(ref, save, resumes);
  }
}

// With lr 0 the export after training is the initial model byte for byte: gathered from
// the shards (tied head on one stage and across stages); samples run through the gathered
// layers too.
TEST(Zero3Export, GathersTheWholeModel) {
  for (const auto& [name, layout] : std::vector<std::pair<std::string, Case>>{
           {"qwen3-tiny", {"", 2, {"--dp", "2"}}},
           {"qwen3-tiny", {"", 4, {"--dp", "2", "--pp", "2", "--micro-batch-size", "1"}}},
           {"llama-deep4", {"", 4, {"--dp", "2", "--tp", "2", "--zero3-keep-embeddings"}}}}) {
    const ReferenceRun ref = testing::load_reference_run(name);
    std::vector<std::string> args = joined({"train"}, ref.train_args(2));
    *(std::find(args.begin(), args.end(), "--lr") + 1) = "0";
    testing::TempDir tmp;
    const testing::CommandResult r =
        run_case(layout, joined(joined(args, layout.flags),
                                {"--zero", "3", "--tokenizer", "byte", "--sample-every", "1",
                                 "--sample-tokens", "4", "--export-to", (tmp / "out").string()}));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    EXPECT_NE(r.stdout_text.find("sample at step 1"), std::string::npos) << r.stdout_text;
    const fs::path initial = *(std::find(args.begin(), args.end(), "--init-from") + 1);
    EXPECT_EQ(testing::read_file(tmp / "out" / "model.safetensors"),
              testing::read_file(initial / "model.safetensors"))
        << name;
  }
}

// Units: a transformer layer each, the embeddings, the head; a tied tensor alone.
TEST(Zero3Units, OneUnitPerLayerAndTiedTensorsAlone) {
  ParameterSet params;
  const auto add = [&](const std::string& name, int64_t n, int layer, std::string tie = "") {
    Parameter& p = params.at(params.add(name, {n}));
    p.layer = layer;
    p.tie_group = std::move(tie);
  };
  add("wte", 10, -1, "embedding");
  add("wpe", 4, -1);
  add("h.0.a", 3, 0);
  add("h.0.b", 5, 0);
  add("h.1.a", 7, 1);
  add("ln_f", 2, 2);
  add("head", 10, 2, "embedding");
  const std::vector<FlatSpan> units = layer_units(params);
  const std::vector<std::pair<int64_t, int64_t>> expected = {{0, 10}, {10, 4}, {14, 8},
                                                             {22, 7}, {29, 2}, {31, 10}};
  ASSERT_EQ(units.size(), expected.size());
  for (size_t i = 0; i < units.size(); ++i) {
    EXPECT_EQ(units[i].offset, expected[i].first) << i;
    EXPECT_EQ(units[i].numel, expected[i].second) << i;
  }
}

TEST(Zero3Errors, OneErrorLine) {
  for (const auto& [name, flags, message] :
       std::vector<std::tuple<std::string, std::vector<std::string>, std::string>>{
           {"gpt2-tiny", {"--zero", "4"}, "error: parallel.zero must be 0, 1, 2 or 3, got 4"},
           {"gpt2-tiny",
            {"--zero3-keep-embeddings"},
            "error: parallel.zero3_keep_embeddings needs parallel.zero = 3, got 0"}}) {
    const ReferenceRun ref = testing::load_reference_run(name);
    const testing::CommandResult r =
        testing::run_peng(joined(joined({"train"}, ref.train_args(1)), joined(flags, {"--quiet"})));
    EXPECT_NE(r.exit_code, 0);
    const std::vector<std::string> errors = testing::error_lines(r.stderr_text);
    ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
    EXPECT_NE(errors[0].find(message), std::string::npos) << errors[0];
  }
}

// ZeRO with one dp rank shards nothing: said, not silent; training still runs.
TEST(Zero3Errors, DpOfOneIsAWarning) {
  const ReferenceRun ref = testing::load_reference_run("llama-tiny");
  const testing::CommandResult r = testing::run_mpi_peng(
      2, joined(joined({"train"}, ref.train_args(2)), {"--tp", "2", "--zero", "3", "--quiet"}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("warning: parallel.zero = 3 with dp 1 shards nothing"),
            std::string::npos)
      << r.stderr_text;
}

}  // namespace
}  // namespace peng
