// Checkpoints and model families: the manifest records the family and its config, a
// checkpoint written before families existed (no family: GPT-2) still resumes bit for bit,
// a Llama-family checkpoint saved with kv heads replicated over tp verifies (every element
// written once) and exports exactly what the run exported, and resuming another
// architecture is refused naming the field.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "peng/checkpoint/manifest.h"
#include "peng/core/io/atomic_file.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using testing::ReferenceRun;

using testing::joined;

std::vector<std::pair<double, double>> losses(const fs::path& jsonl) {
  std::vector<std::pair<double, double>> out;
  std::istringstream lines(testing::read_file(jsonl));
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.emplace_back(j["loss"], j["grad_norm"]);
  }
  return out;
}

TEST(FamilyCheckpoint, CheckpointWithoutFamilyIsGpt2AndResumesBitExact) {
  const ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
  testing::TempDir tmp;
  const auto train = [&](int steps, const std::vector<std::string>& more) {
    return testing::run_peng(
        joined(joined({"train"}, ref.train_args(steps)), joined({"--quiet"}, more)));
  };
  ASSERT_EQ(train(8, {"--metrics-jsonl", (tmp / "straight.jsonl").string()}).exit_code, 0);
  const fs::path dir = tmp / "ckpt";
  ASSERT_EQ(train(4, {"--checkpoint-dir", dir.string()}).exit_code, 0);
  // What an older peng wrote: the GPT-2 sizes, no family, no config.
  const fs::path step = dir / "step-00000004";
  proto::Manifest m = ckpt::read_manifest(step);
  EXPECT_EQ(m.model_family(), "gpt2");
  m.clear_model_family();
  m.clear_model_config_json();
  write_file_atomic(step / ckpt::kManifestFile, ckpt::encode_manifest(m));

  const testing::CommandResult inspect = testing::run_peng({"ckpt", "inspect", step.string()});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.stderr_text;
  EXPECT_NE(inspect.stdout_text.find("architecture: family gpt2"), std::string::npos)
      << inspect.stdout_text;
  const testing::CommandResult r = train(
      8, {"--checkpoint-dir", dir.string(), "--metrics-jsonl", (tmp / "resumed.jsonl").string()});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  const auto straight = losses(tmp / "straight.jsonl"), resumed = losses(tmp / "resumed.jsonl");
  ASSERT_EQ(resumed.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(resumed[i], straight[4 + i]) << "step " << 4 + i;
}

// A saved config that makes no model: inspecting (and verifying the tensors) still works,
// resuming or exporting is one error line naming the checkpoint.
TEST(FamilyCheckpoint, InvalidSavedConfigIsReported) {
  const ReferenceRun ref = testing::load_reference_run("llama-tiny");
  testing::TempDir tmp;
  const fs::path dir = tmp / "ckpt";
  ASSERT_EQ(testing::run_peng(joined(joined({"train"}, ref.train_args(2)),
                                     {"--quiet", "--checkpoint-dir", dir.string()}))
                .exit_code,
            0);
  const fs::path step = dir / "step-00000002";
  proto::Manifest m = ckpt::read_manifest(step);
  m.set_model_config_json("{\"hidden_size\": 64");
  write_file_atomic(step / ckpt::kManifestFile, ckpt::encode_manifest(m));
  const testing::CommandResult inspect =
      testing::run_peng({"ckpt", "inspect", step.string(), "--verify"});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.stderr_text;
  EXPECT_NE(inspect.stdout_text.find("architecture: (invalid: checkpoint "), std::string::npos)
      << inspect.stdout_text;
  EXPECT_NE(inspect.stdout_text.find("verified: "), std::string::npos) << inspect.stdout_text;
  for (const auto& args :
       {joined(joined({"train"}, ref.train_args(4)), {"--quiet", "--checkpoint-dir", dir.string()}),
        std::vector<std::string>{"ckpt", "export", step.string(), "--to", (tmp / "hf").string()}}) {
    const testing::CommandResult r = testing::run_peng(args);
    EXPECT_NE(r.exit_code, 0);
    const auto errors = testing::error_lines(r.stderr_text);
    ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
    EXPECT_NE(errors[0].find("the saved model is invalid: the saved model config is not JSON"),
              std::string::npos)
        << errors[0];
  }
}

// qwen3-tiny under tp 4: its 2 kv heads live on 2 ranks each, its head is tied.
TEST(FamilyCheckpoint, LlamaFamilyCheckpointVerifiesAndExports) {
  const ReferenceRun ref = testing::load_reference_run("qwen3-tiny");
  testing::TempDir tmp;
  const fs::path dir = tmp / "ckpt", exported = tmp / "exported";
  const testing::CommandResult r =
      testing::run_mpi_peng(4, joined(joined({"train"}, ref.train_args(3)),
                                      {"--quiet", "--tp", "4", "--checkpoint-dir", dir.string(),
                                       "--export-to", exported.string()}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;

  const testing::CommandResult inspect =
      testing::run_peng({"ckpt", "inspect", dir.string(), "--verify"});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.stderr_text;
  for (const std::string part :
       {"architecture: family qwen3, n_kv_head 2, head_dim 16, ffn_hidden 128, norm rmsnorm",
        "qk_norm true, tied_embeddings true", "model/layers.0.self_attn.qkv_proj.weight",
        "[192, 64]", "verified: "}) {
    EXPECT_NE(inspect.stdout_text.find(part), std::string::npos) << part << "\n"
                                                                 << inspect.stdout_text;
  }
  const testing::CommandResult e =
      testing::run_peng({"ckpt", "export", dir.string(), "--to", (tmp / "hf").string()});
  ASSERT_EQ(e.exit_code, 0) << e.stderr_text;
  for (const char* file : {"model.safetensors", "config.json"}) {
    EXPECT_EQ(testing::read_file(tmp / "hf" / file), testing::read_file(exported / file)) << file;
  }
}

TEST(FamilyCheckpoint, AnotherArchitectureIsRefused) {
  const ReferenceRun ref = testing::load_reference_run("qwen3-tiny");
  testing::TempDir tmp;
  const fs::path dir = tmp / "ckpt";
  ASSERT_EQ(testing::run_peng(joined(joined({"train"}, ref.train_args(2)),
                                     {"--quiet", "--checkpoint-dir", dir.string()}))
                .exit_code,
            0);
  // The same sizes as a qwen2 model.
  const testing::CommandResult r =
      testing::run_peng({"train",
                         "--data",
                         (testing::reference_dir() / "qwen3-tiny" / "tokens.bin").string(),
                         "--model-family",
                         "qwen2",
                         "--n-layer",
                         "2",
                         "--n-head",
                         "8",
                         "--n-kv-head",
                         "2",
                         "--head-dim",
                         "16",
                         "--n-embd",
                         "64",
                         "--ffn-hidden",
                         "128",
                         "--vocab-size",
                         "400",
                         "--batch-size",
                         "4",
                         "--seq-len",
                         "16",
                         "--steps",
                         "4",
                         "--quiet",
                         "--resume",
                         dir.string()});
  EXPECT_NE(r.exit_code, 0);
  const auto errors = testing::error_lines(r.stderr_text);
  ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
  EXPECT_NE(errors[0].find("was saved for model.family = qwen3 but this run has qwen2"),
            std::string::npos)
      << errors[0];
}

}  // namespace
}  // namespace peng
