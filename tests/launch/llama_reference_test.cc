// The Llama family's numerics contract: the ../shared/reference cases of
// make_llama_reference.py (llama-tiny: GQA 4:2, untied; qwen2-odd: q/k/v biases, tied, odd
// vocabulary, 3 kv heads, an MLP of 136; qwen3-tiny: q/k norms, head_dim 16 != 64 / 8, tied;
// llama-deep4: 4 layers) match PyTorch at every step (1e-4 loss, 1e-3 gradient norm) in one
// process and under every layout: dp, tp (replicated kv heads at tp 4 on qwen3-tiny, a
// padded MLP at tp 3 on qwen2-odd), sequence parallelism, pipelines (1F1B, GPipe,
// interleaved, a tied head across stages), ZeRO 1 and 2, dp 2 x tp 2 x pp 2 on 8 ranks;
// resumed across layouts from a checkpoint; layouts that cannot split are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using testing::ReferenceRun;

using testing::joined;

using Case = testing::LayoutCase;

testing::CommandResult run(const Case& c, const std::vector<std::string>& args) {
  return testing::run_case(c, args);
}

class LlamaReference : public ::testing::TestWithParam<Case> {};

TEST_P(LlamaReference, MatchesPyTorchEveryStep) {
  testing::expect_case_matches_reference(GetParam());
}

const std::vector<std::string> kMicro1 = {"--micro-batch-size", "1"};

INSTANTIATE_TEST_SUITE_P(
    Layouts, LlamaReference,
    ::testing::Values(
        // one process, with and without micro-batching
        Case{"llama-tiny"}, Case{"llama-tiny", 1, kMicro1}, Case{"qwen2-odd"},
        Case{"qwen2-odd", 1, {"--micro-batch-size", "3"}}, Case{"qwen3-tiny"}, Case{"llama-deep4"},
        // data parallelism and ZeRO
        Case{"llama-tiny", 2, {"--dp", "2"}},
        Case{"llama-tiny", 2, {"--dp", "2", "--zero", "1", "--bucket-mb", "0.01"}},
        Case{"qwen3-tiny", 2, {"--dp", "2", "--zero", "2", "--micro-batch-size", "1"}},
        Case{"qwen2-odd", 3, {"--dp", "3", "--zero", "2", "--bucket-mb", "0.003"}},
        // tensor parallelism: GQA heads split; tp 4 > 2 kv heads replicates them; qwen2-odd's
        // 3 kv heads need tp 3 (its MLP of 136 is padded to 138)
        Case{"llama-tiny", 2, {"--tp", "2"}}, Case{"qwen3-tiny", 2, {"--tp", "2"}},
        Case{"qwen3-tiny", 4, {"--tp", "4"}}, Case{"qwen2-odd", 3, {"--tp", "3"}},
        Case{"llama-tiny", 4, {"--tp", "4", "--micro-batch-size", "2"}},
        // sequence parallelism
        Case{"llama-tiny", 2, {"--tp", "2", "--sequence-parallel"}},
        Case{"qwen3-tiny", 4, {"--tp", "4", "--sequence-parallel", "--micro-batch-size", "2"}},
        Case{"qwen2-odd", 3, {"--tp", "3", "--sequence-parallel"}},
        // pipelines: untied and tied heads on the last stage
        Case{"llama-tiny", 2, {"--pp", "2", "--micro-batch-size", "1"}},
        Case{"qwen2-odd", 2, {"--pp", "2", "--micro-batch-size", "2"}},
        Case{"qwen3-tiny", 2, {"--pp", "2", "--pp-schedule", "gpipe", "--micro-batch-size", "1"}},
        Case{"llama-deep4",
             2,
             {"--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2",
              "--micro-batch-size", "2"}},
        Case{"llama-deep4", 4, {"--pp", "4", "--micro-batch-size", "2"}},
        // everything together (kv heads replicated over tp 4 with ZeRO 2 sharding over dp)
        Case{"qwen3-tiny",
             8,
             {"--tp", "4", "--dp", "2", "--zero", "2", "--micro-batch-size", "1", "--bucket-mb",
              "0.01"}},
        Case{"qwen3-tiny", 4, {"--tp", "2", "--dp", "2", "--zero", "1", "--micro-batch-size", "1"}},
        Case{"llama-deep4",
             8,
             {"--dp", "2", "--tp", "2", "--pp", "2", "--zero", "1", "--sequence-parallel",
              "--pp-schedule", "interleaved", "--virtual-stages", "2", "--micro-batch-size", "1"}},
        Case{"qwen2-odd", 6, {"--tp", "3", "--pp", "2", "--zero", "0", "--micro-batch-size", "3"}}),
    [](const auto& info) {
      return testing::case_name(info.param.name, info.param.np, info.param.flags);
    });

// A model that does not split over the layout is refused on every rank with one line.
TEST(LlamaReferenceErrors, LayoutsThatCannotSplitAreRefused) {
  for (const auto& [name, np, flags, message] :
       std::vector<std::tuple<std::string, int, std::vector<std::string>, std::string>>{
           {"qwen2-odd",
            2,
            {"--tp", "2"},
            "error: model.n_kv_head (3) and parallel.tp (2) do not fit"},
           {"qwen3-tiny",
            3,
            {"--tp", "3"},
            "error: model.n_head (8) is not divisible by parallel.tp (3)"},
           {"llama-tiny",
            2,
            {"--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2"},
            "error: model.n_layer (2) is less than pp x virtual stages (2 x 2)"}}) {
    const ReferenceRun ref = testing::load_reference_run(name);
    const testing::CommandResult r = testing::run_mpi_peng(
        np, joined(joined({"train"}, ref.train_args()), joined(flags, {"--quiet"})));
    EXPECT_NE(r.exit_code, 0) << name;
    EXPECT_NE(r.stderr_text.find(message), std::string::npos) << r.stderr_text;
  }
}

// The first text sample a run prints.
std::string first_sample(const std::string& stdout_text) {
  const size_t at = stdout_text.find("sample at step 1:\n");
  if (at == std::string::npos) return "";
  const size_t begin = stdout_text.find('\n', at) + 1;
  return stdout_text.substr(begin, stdout_text.find("\n---", begin) - begin);
}

// With lr 0 the exported model is the initial one: every shard (kv heads replicated over
// tp 4 included) and stage is gathered back into exactly the reference folder's bytes.
// Pipeline stages sample exactly the text one process samples.
TEST(LlamaReferenceExport, GathersShardsAndStagesAndSamples) {
  for (const auto& [name, layouts] : std::vector<std::pair<std::string, std::vector<Case>>>{
           {"llama-deep4",
            {{"", 2, {"--tp", "2"}},
             {"", 2, {"--pp", "2", "--micro-batch-size", "4"}},
             {"",
              4,
              {"--tp", "2", "--pp", "2", "--pp-schedule", "interleaved", "--virtual-stages", "2",
               "--micro-batch-size", "2", "--sequence-parallel"}}}},
           {"qwen3-tiny",
            {{"", 4, {"--tp", "4"}}, {"", 2, {"--pp", "2", "--micro-batch-size", "2"}}}}}) {
    const ReferenceRun ref = testing::load_reference_run(name);
    std::vector<std::string> base = joined({"train"}, ref.train_args(2));
    *(std::find(base.begin(), base.end(), "--lr") + 1) = "0";
    base = joined(base, {"--tokenizer", "byte", "--sample-every", "1", "--sample-tokens", "8",
                         "--log-every", "1"});
    const testing::CommandResult single = testing::run_peng(base);
    ASSERT_EQ(single.exit_code, 0) << single.stderr_text;
    const std::string reference_sample = first_sample(single.stdout_text);
    for (const Case& layout : layouts) {
      testing::TempDir tmp;
      const testing::CommandResult r =
          run(layout, joined(joined(base, {"--export-to", (tmp / "out").string()}), layout.flags));
      ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
      EXPECT_EQ(testing::read_file(tmp / "out" / "model.safetensors"),
                testing::read_file(testing::reference_dir() / name / "model.safetensors"))
          << name << " np " << layout.np;
      if (layout.flags[0] == "--pp") {
        EXPECT_EQ(first_sample(r.stdout_text), reference_sample) << name;
      }
    }
  }
}

// A Hugging Face folder peng cannot train as it is: one error line naming the key.
TEST(LlamaReferenceErrors, UnsupportedHfConfigIsOneErrorLine) {
  const ReferenceRun ref = testing::load_reference_run("qwen2-odd");
  testing::TempDir tmp;
  const fs::path src = testing::reference_dir() / "qwen2-odd";
  fs::create_directories(tmp / "model");
  fs::copy_file(src / "model.safetensors", tmp / "model" / "model.safetensors");
  nlohmann::json config = nlohmann::json::parse(testing::read_file(src / "config.json"));
  config["use_sliding_window"] = true;
  testing::write_file(tmp / "model" / "config.json", config.dump(1));
  std::vector<std::string> args = joined({"train"}, ref.train_args(1));
  *(std::find(args.begin(), args.end(), "--init-from") + 1) = (tmp / "model").string();
  const testing::CommandResult r = testing::run_peng(joined(args, {"--quiet"}));
  EXPECT_NE(r.exit_code, 0);
  const std::vector<std::string> errors = testing::error_lines(r.stderr_text);
  ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
  EXPECT_NE(errors[0].find("config.json: field \"use_sliding_window\" is true"), std::string::npos)
      << errors[0];
}

// Saved at step 5 under one layout, resumed under others: the resumed steps are the
// reference's. qwen3-tiny's save has kv heads replicated over tp 4 and a tied head,
// qwen2-odd's an MLP padded from 136 to 138 features over tp 3.
TEST(LlamaReferenceResume, ResumesUnderAnotherLayout) {
  for (const auto& [name, save, resumes] :
       std::vector<std::tuple<std::string, Case, std::vector<Case>>>{
           {"qwen3-tiny",
            {"", 4, {"--tp", "4", "--sequence-parallel"}},
            {{"", 4, {"--dp", "2", "--pp", "2", "--zero", "1", "--micro-batch-size", "1"}},
             {"", 1, {}}}},
           {"qwen2-odd",
            {"", 3, {"--tp", "3"}},
            {{"", 2, {"--dp", "2", "--zero", "1"}}, {"", 1, {}}}},
           {"llama-deep4",
            {"",
             8,
             {"--dp", "2", "--tp", "2", "--pp", "2", "--zero", "2", "--micro-batch-size", "2"}},
            {{"", 4, {"--pp", "4", "--micro-batch-size", "2"}}, {"", 2, {"--tp", "2"}}}}}) {
    testing::expect_resumes_match_reference(testing::load_reference_run(name), save, resumes);
  }
}

}  // namespace
}  // namespace peng
