// Activation recomputation (models/nn/recompute.h): every policy leaves the arithmetic alone
// (bit-identical losses, norms and MoE token counts to keeping every activation, in one
// process, for every family), every reference case still matches PyTorch under dp x tp with
// sequence parallelism, 1F1B and interleaved pipelines and micro-batching, HFU counts the
// repeated forward FLOPs, and bad settings are one error line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "peng/launch/model_setup.h"
#include "peng/models/registry.h"
#include "peng/telemetry/flops.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

using nlohmann::json;
using testing::joined;
using testing::ReferenceRun;

const std::vector<std::vector<std::string>> kPolicies = {
    {"--recompute", "full"},
    {"--recompute", "full", "--recompute-layers", "1"},
    {"--recompute", "selective"},  // core_attn
    {"--recompute", "selective", "--recompute-modules", "core_attn,mlp_act,norm"},
    {"--recompute", "selective", "--recompute-modules", "norm", "--recompute-layers", "1"}};

// The step lines' training numbers, as the JSON text wrote them (exact comparison).
std::vector<std::string> numbers(const std::filesystem::path& jsonl) {
  std::vector<std::string> out;
  std::istringstream lines(testing::read_file(jsonl));
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line);
    if (!j.contains("loss")) continue;
    out.push_back(j["loss"].dump() + " " + j["grad_norm"].dump() + " " +
                  (j.contains("moe") ? j["moe"].dump() : ""));
  }
  return out;
}

class RecomputeBitIdentical : public ::testing::TestWithParam<std::string> {};

TEST_P(RecomputeBitIdentical, EveryPolicyKeepsTheArithmetic) {
  const ReferenceRun ref = testing::load_reference_run(GetParam());
  testing::TempDir tmp;
  const auto train = [&](const std::vector<std::string>& flags, const std::string& out) {
    const testing::CommandResult r = testing::run_peng(
        joined(joined({"train"}, ref.train_args(4)),
               joined(flags, {"--micro-batch-size", "2", "--quiet", "--metrics-jsonl", out})));
    EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
    return numbers(out);
  };
  const std::vector<std::string> kept = train({}, (tmp / "kept.jsonl").string());
  ASSERT_EQ(kept.size(), 4u);
  for (const auto& policy : kPolicies) {
    EXPECT_EQ(train(policy, (tmp / "r.jsonl").string()), kept) << testing::case_name("", 1, policy);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, RecomputeBitIdentical,
                         ::testing::Values("gpt2-tiny", "llama-tiny", "qwen2-odd", "qwen3-tiny",
                                           "moe-tiny", "moe-noaux4"),
                         [](const auto& info) { return testing::case_name(info.param, 1, {}); });

using Case = testing::LayoutCase;

class RecomputeReference : public ::testing::TestWithParam<Case> {};

TEST_P(RecomputeReference, MatchesPyTorchEveryStep) {
  testing::expect_case_matches_reference(GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, RecomputeReference,
    ::testing::Values(
        Case{"gpt2-deep4", 1, {"--recompute", "full", "--micro-batch-size", "2"}},
        Case{"gpt2-deep4",
             4,
             {"--dp", "2", "--tp", "2", "--sequence-parallel", "--recompute", "selective",
              "--recompute-modules", "core_attn,mlp_act,norm"}},
        Case{"llama-deep4",
             4,
             {"--dp", "2", "--tp", "2", "--sequence-parallel", "--recompute", "full"}},
        Case{"llama-deep4",
             2,
             {"--pp", "2", "--micro-batch-size", "2", "--recompute", "full", "--recompute-layers",
              "1"}},
        Case{"llama-deep4",
             2,
             {"--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2",
              "--micro-batch-size", "2", "--recompute", "selective", "--recompute-modules",
              "norm,mlp_act"}},
        Case{"qwen3-tiny", 2, {"--tp", "2", "--recompute", "full", "--micro-batch-size", "1"}},
        Case{"moe-sigmoid",
             4,
             {"--dp", "2", "--tp", "2", "--ep", "2", "--sequence-parallel", "--recompute", "full"}},
        Case{"moe-noaux4",
             2,
             {"--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2",
              "--micro-batch-size", "2", "--recompute", "selective", "--recompute-modules",
              "core_attn,norm"}}),
    [](const auto& info) {
      return testing::case_name(info.param.name, info.param.np, info.param.flags);
    });

// HFU's recomputed FLOPs by hand for Llama 3.1 8B at T = 8192 (tests/telemetry/flops_test.cc
// has its N): a fully recomputed layer repeats 2 x 218,112,000 weight FLOPs and the attention's
// 4 x 4096 x 8192 = 134,217,728 per token; core_attn only the latter. MFU is unchanged.
TEST(RecomputeFlops, HardwareFlopsCountTheRepeatedForward) {
  const DecoderConfig c = model_preset("llama3.1-8b");
  const FlopsShape none = flops_shape(c, 8192);
  const FlopsShape full = flops_shape(c, 8192, 1.0, {.full = true});
  EXPECT_EQ(full.recompute_flops_per_token, 32 * (2.0 * 218112000 + 134217728.0));
  EXPECT_EQ(model_flops_per_token(full), model_flops_per_token(none));
  EXPECT_EQ(hardware_flops_per_token(full) - hardware_flops_per_token(none),
            full.recompute_flops_per_token);
  const FlopsShape attn = flops_shape(c, 8192, 0.5, {.core_attn = true});
  EXPECT_EQ(attn.recompute_flops_per_token, 32 * 0.5 * 134217728.0);
  // The first 3 layers of each of 4 stages: 12 layers.
  const FlopsShape some =
      flops_shape(c, 8192, 1.0, {.full = true, .layers = 3}, even_split(c.n_layer, 4));
  EXPECT_EQ(some.recompute_flops_per_token, 12 * (2.0 * 218112000 + 134217728.0));
  const FlopsShape act = flops_shape(c, 8192, 1.0, {.mlp_act = true, .norm = true});
  EXPECT_EQ(act.recompute_flops_per_token, 0.0);
}

TEST(RecomputeErrors, OneErrorLine) {
  const ReferenceRun ref = testing::load_reference_run("llama-tiny");
  for (const auto& [flags, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--recompute", "some"},
            "error: training.recompute \"some\" is not none, selective or full"},
           {{"--recompute", "selective", "--recompute-modules", "core_attn,attention"},
            "error: training.recompute_modules: unknown module \"attention\" (known: core_attn, "
            "mlp_act, norm)"},
           {{"--recompute-modules", "norm"},
            "error: training.recompute_modules needs training.recompute = selective"},
           {{"--recompute", "full", "--recompute-layers", "3"},
            "error: training.recompute_layers (3) is more than the 2 layers of the largest "
            "pipeline stage"}}) {
    const testing::CommandResult r =
        testing::run_peng(joined(joined({"train"}, ref.train_args(1)), joined(flags, {"--quiet"})));
    EXPECT_NE(r.exit_code, 0);
    const std::vector<std::string> errors = testing::error_lines(r.stderr_text);
    ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
    EXPECT_NE(errors[0].find(message), std::string::npos) << errors[0];
  }
}

}  // namespace
}  // namespace peng
