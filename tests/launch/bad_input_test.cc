// Bad input through the `peng` command line: exit code != 0 and exactly one line on
// stderr starting with `error:` that names the culprit (file, field or tensor).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::read_file;
using testing::run_peng;
using testing::TempDir;
using testing::write_file;

const fs::path kTiny = testing::reference_dir() / "gpt2-tiny";

std::vector<std::string> reference_run(const fs::path& init, const fs::path& data) {
  return {"train", "--init-from", init.string(), "--data",  data.string(), "--batch-size",
          "4",     "--seq-len",   "16",          "--steps", "2",           "--lr",
          "1e-3",  "--quiet"};
}

// Exactly one `error:` line, mentioning every needle; non-zero exit.
void expect_error(const CommandResult& r, const std::vector<std::string>& needles) {
  EXPECT_NE(r.exit_code, 0);
  auto lines = testing::error_lines(r.stderr_text);
  ASSERT_EQ(lines.size(), 1u) << "stderr:\n" << r.stderr_text;
  for (const auto& n : needles) {
    EXPECT_NE(lines[0].find(n), std::string::npos) << "'" << n << "' not in: " << lines[0];
  }
}

// A copy of the gpt2-tiny reference folder whose safetensors header is edited by `edit`.
fs::path edited_model(const TempDir& tmp, const std::function<void(nlohmann::json&)>& edit) {
  fs::path dir = tmp / "model";
  fs::create_directories(dir);
  fs::copy_file(kTiny / "config.json", dir / "config.json");
  std::string bytes = read_file(kTiny / "model.safetensors");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  edit(header);
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  uint64_t hn = h.size();
  std::string out(reinterpret_cast<const char*>(&hn), 8);
  write_file(dir / "model.safetensors", out + h + bytes.substr(8 + n));
  return dir;
}

TEST(BadInput, UnknownConfigField) {
  TempDir tmp;
  write_file(tmp / "c.pbtxt", "training { steps: 3 }\noptim { learning_rate: 0.1 }\n");
  auto args = reference_run(kTiny, kTiny / "tokens.bin");
  args.insert(args.begin() + 1, (tmp / "c.pbtxt").string());
  expect_error(run_peng(args), {"c.pbtxt:2", "learning_rate"});
  expect_error(run_peng({"train", "--set", "optim.learning_rate=1"}), {"optim.learning_rate"});
}

TEST(BadInput, WrongType) {
  TempDir tmp;
  write_file(tmp / "c.pbtxt", "training { steps: \"many\" }\n");
  auto args = reference_run(kTiny, kTiny / "tokens.bin");
  args.insert(args.begin() + 1, (tmp / "c.pbtxt").string());
  expect_error(run_peng(args), {"c.pbtxt:1", "steps"});
  auto a2 = reference_run(kTiny, kTiny / "tokens.bin");
  *(std::find(a2.begin(), a2.end(), "--batch-size") + 1) = "four";
  expect_error(run_peng(a2), {"training.batch_size", "four"});
}

TEST(BadInput, MissingFiles) {
  expect_error(run_peng(reference_run(kTiny, "/nonexistent/tokens.bin")),
               {"/nonexistent/tokens.bin"});
  expect_error(run_peng(reference_run("/nonexistent/model", kTiny / "tokens.bin")),
               {"/nonexistent/model"});
  expect_error(run_peng({"train", "/nonexistent/c.pbtxt"}), {"/nonexistent/c.pbtxt"});
}

TEST(BadInput, BadShardMagic) {
  TempDir tmp;
  std::string bytes = read_file(kTiny / "tokens.bin");
  int32_t bad = 12345;
  std::memcpy(bytes.data(), &bad, 4);
  write_file(tmp / "bad.bin", bytes);
  expect_error(run_peng(reference_run(kTiny, tmp / "bad.bin")), {"bad.bin", "magic"});
}

TEST(BadInput, TruncatedShard) {
  TempDir tmp;
  std::string bytes = read_file(kTiny / "tokens.bin");
  write_file(tmp / "short.bin", bytes.substr(0, bytes.size() - 10));
  expect_error(run_peng(reference_run(kTiny, tmp / "short.bin")), {"short.bin"});
}

TEST(BadInput, TokenIdBeyondVocabulary) {
  TempDir tmp;
  std::string bytes = read_file(kTiny / "tokens.bin");
  uint16_t big = 300;  // vocab is 256
  std::memcpy(bytes.data() + 1024 + 2 * 5, &big, 2);
  write_file(tmp / "big.bin", bytes);
  expect_error(run_peng(reference_run(kTiny, tmp / "big.bin")), {"big.bin", "300", "256"});
}

TEST(BadInput, SafetensorsBadOffsets) {
  TempDir tmp;
  fs::path m = edited_model(
      tmp, [](nlohmann::json& h) { h["h.1.mlp.c_fc.bias"]["data_offsets"][1] = 1u << 30; });
  expect_error(run_peng(reference_run(m, kTiny / "tokens.bin")), {"h.1.mlp.c_fc.bias"});
}

TEST(BadInput, SafetensorsShapeMismatch) {
  TempDir tmp;
  fs::path m = edited_model(tmp, [](nlohmann::json& h) {
    // Same byte count, wrong shape for the config.
    h["h.0.attn.c_proj.weight"]["shape"] = {32, 128};
  });
  expect_error(run_peng(reference_run(m, kTiny / "tokens.bin")), {"h.0.attn.c_proj.weight"});
}

TEST(BadInput, SafetensorsUnsupportedDtype) {
  TempDir tmp;
  fs::path m = edited_model(tmp, [](nlohmann::json& h) { h["ln_f.weight"]["dtype"] = "F8_E4M3"; });
  expect_error(run_peng(reference_run(m, kTiny / "tokens.bin")), {"ln_f.weight"});
}

TEST(BadInput, EmbeddingNotDivisibleByHeads) {
  expect_error(run_peng({"train", "--data", (kTiny / "tokens.bin").string(), "--n-layer", "2",
                         "--n-head", "5", "--n-embd", "64", "--vocab-size", "256", "--seq-len",
                         "16", "--steps", "1", "--quiet"}),
               {"n_embd", "n_head"});
}

TEST(BadInput, BatchNotDivisibleByMicroBatch) {
  auto args = reference_run(kTiny, kTiny / "tokens.bin");
  args.push_back("--micro-batch-size");
  args.push_back("3");
  expect_error(run_peng(args), {"micro_batch_size"});
}

TEST(BadInput, ParallelFieldsOutOfRange) {
  auto with = [](std::vector<std::string> extra) {
    auto args = reference_run(kTiny, kTiny / "tokens.bin");
    args.insert(args.end(), extra.begin(), extra.end());
    return run_peng(args);
  };
  expect_error(with({"--zero", "4"}), {"parallel.zero", "0, 1, 2 or 3", "4"});
  expect_error(with({"--bucket-mb", "0"}), {"parallel.bucket_mb"});
  expect_error(with({"--collective-timeout", "-1"}), {"parallel.collective_timeout_s"});
  expect_error(with({"--comm", "gloo"}), {"parallel.comm", "gloo"});
  expect_error(with({"--comm", "nccl"}), {"parallel.comm = nccl", "CPU backend"});
  expect_error(with({"--comm", "mpi"}), {"parallel.comm", "auto, nccl or staged", "mpi"});
  expect_error(with({"--grad-reduce-dtype", "f16"}),
               {"parallel.grad_reduce_dtype", "fp32 or bf16", "f16"});
}

TEST(BadInput, DivergedTrainingStopsWithAnError) {
  auto args = reference_run(kTiny, kTiny / "tokens.bin");
  *(std::find(args.begin(), args.end(), "--lr") + 1) = "1e12";
  *(std::find(args.begin(), args.end(), "--steps") + 1) = "20";
  args.push_back("--grad-clip");
  args.push_back("0");
  expect_error(run_peng(args), {"loss is", "diverged"});
}

TEST(BadInput, MalformedLauncherEnvironment) {
  expect_error(run_peng(reference_run(kTiny, kTiny / "tokens.bin"),
                        {{"SLURM_NTASKS", "2"}, {"SLURM_PROCID", "x"}}),
               {"SLURM_PROCID"});
}

TEST(BadInput, UnknownFlag) {
  expect_error(run_peng({"train", "--learning-rate", "3"}), {"--learning-rate"});
}

}  // namespace
}  // namespace peng
