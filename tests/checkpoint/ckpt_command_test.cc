// `peng ckpt inspect` and `peng ckpt export` end to end, on the checkpoint of a short
// gpt2-tiny training run: the export is bit-identical to the run's own --export-to,
// inspect reports the saved state, --verify catches a flipped byte, and bad folders give
// one `error:` line naming them.
#include <gtest/gtest.h>

#include <memory>
#include <sstream>

#include "peng/models/gpt2/hf_checkpoint.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;

// One training run shared by the tests: 3 steps of gpt2-tiny with a checkpoint and an
// export at the end. Tests that damage files work on a copy.
class CkptCommand : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new testing::TempDir();
    const testing::ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
    std::vector<std::string> args = {"train"};
    for (const std::string& a : ref.train_args(3)) args.push_back(a);
    args.insert(args.end(), {"--checkpoint-dir", root().string(), "--export-to",
                             exported().string(), "--quiet"});
    const testing::CommandResult r = testing::run_peng(args);
    ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;
    ASSERT_TRUE(fs::exists(step3() / "manifest.pb"));
    ASSERT_TRUE(fs::exists(exported() / "model.safetensors"));
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }

  static fs::path root() { return tmp_->path() / "ckpt"; }
  static fs::path step3() { return root() / "step-00000003"; }
  static fs::path exported() { return tmp_->path() / "exported"; }
  static Gpt2Config tiny() { return read_hf_gpt2_config(exported()); }

  static testing::TempDir* tmp_;
};
testing::TempDir* CkptCommand::tmp_ = nullptr;

// The line of `text` that contains `needle` (empty when none does).
std::string line_with(const std::string& text, const std::string& needle) {
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return {};
}

void expect_same_config(const Gpt2Config& a, const Gpt2Config& b) {
  EXPECT_EQ(a.n_layer, b.n_layer);
  EXPECT_EQ(a.n_head, b.n_head);
  EXPECT_EQ(a.n_embd, b.n_embd);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_seq_len, b.max_seq_len);
  EXPECT_EQ(a.layernorm_eps, b.layernorm_eps);
}

// Expects a failed command with exactly one `error:` line containing every one of `parts`.
void expect_one_error(const testing::CommandResult& r, const std::vector<std::string>& parts) {
  EXPECT_NE(r.exit_code, 0);
  const std::vector<std::string> errors = testing::error_lines(r.stderr_text);
  ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
  for (const std::string& p : parts) {
    EXPECT_NE(errors[0].find(p), std::string::npos) << "'" << p << "' not in: " << errors[0];
  }
}

TEST_F(CkptCommand, ExportIsBitIdenticalToTheRunsOwnExport) {
  testing::TempDir out;
  const testing::CommandResult r =
      testing::run_peng({"ckpt", "export", step3().string(), "--to", (out / "hf").string()});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("wrote " + (out / "hf").string()), std::string::npos)
      << r.stdout_text;
  EXPECT_EQ(testing::read_file(out / "hf" / "model.safetensors"),
            testing::read_file(exported() / "model.safetensors"));
  const Gpt2Config cfg = read_hf_gpt2_config(out / "hf");
  expect_same_config(cfg, tiny());
  EXPECT_EQ(load_hf_gpt2(out / "hf", cfg).size(), gpt2_parameter_names(cfg).size());

  // The checkpoint root means its latest checkpoint: the same bytes.
  ASSERT_EQ(testing::run_peng({"ckpt", "export", root().string(), "--to", (out / "r").string()})
                .exit_code,
            0);
  EXPECT_EQ(testing::read_file(out / "r" / "model.safetensors"),
            testing::read_file(exported() / "model.safetensors"));
}

// Saved by 4 ranks (dp 2 x tp 2, ZeRO 1): tensors in several shards over 4 files, put back
// together into the same bytes as the run's export.
TEST(CkptCommandSharded, ExportConsolidatesTheShards) {
  testing::TempDir tmp;
  const testing::ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
  std::vector<std::string> args = {"train"};
  for (const std::string& a : ref.train_args(3)) args.push_back(a);
  args.insert(args.end(), {"--tp", "2", "--zero", "1", "--checkpoint-dir", (tmp / "c").string(),
                           "--export-to", (tmp / "e").string(), "--quiet"});
  const testing::CommandResult r = testing::run_mpi_peng(4, args);
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;

  const testing::CommandResult x =
      testing::run_peng({"ckpt", "export", (tmp / "c").string(), "--to", (tmp / "x").string()});
  ASSERT_EQ(x.exit_code, 0) << x.stderr_text;
  EXPECT_EQ(testing::read_file(tmp / "x" / "model.safetensors"),
            testing::read_file(tmp / "e" / "model.safetensors"));

  const testing::CommandResult v =
      testing::run_peng({"ckpt", "inspect", (tmp / "c").string(), "--verify"});
  ASSERT_EQ(v.exit_code, 0) << v.stderr_text;
  EXPECT_NE(v.stdout_text.find("layout: world 4 = dp 2 x tp 2 x pp 1 | zero 1"), std::string::npos)
      << v.stdout_text;
  EXPECT_NE(v.stdout_text.find("in 4 data files"), std::string::npos) << v.stdout_text;
  // c_attn is split over tp by columns and over dp by the ZeRO spans: more than one shard.
  const std::string c_attn = line_with(v.stdout_text, "model/h.0.attn.c_attn.weight ");
  int shards = 0;
  std::istringstream(c_attn.substr(c_attn.find(']') + 1)) >> shards;
  EXPECT_GT(shards, 1) << c_attn;
  EXPECT_NE(v.stdout_text.find("all checksums match"), std::string::npos) << v.stdout_text;
}

TEST_F(CkptCommand, Bf16ExportMatchesConvertingTheF32Export) {
  testing::TempDir out;
  ASSERT_EQ(testing::run_peng({"ckpt", "export", step3().string(), "--to", (out / "ckpt").string(),
                               "--dtype", "bf16"})
                .exit_code,
            0);
  ASSERT_EQ(testing::run_peng({"export", "--init-from", exported().string(), "--to",
                               (out / "hf").string(), "--dtype", "bf16"})
                .exit_code,
            0);
  EXPECT_EQ(testing::read_file(out / "ckpt" / "model.safetensors"),
            testing::read_file(out / "hf" / "model.safetensors"));
}

TEST_F(CkptCommand, InspectReportsTheSavedState) {
  const testing::CommandResult r = testing::run_peng({"ckpt", "inspect", root().string()});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  const std::string& out = r.stdout_text;
  EXPECT_NE(out.find("checkpoint " + step3().string()), std::string::npos) << out;
  EXPECT_NE(out.find("step: 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("layout: world 1 = dp 1 x tp 1 x pp 1 | zero 0 | virtual stages 1 | "
                     "sequence parallel off"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("model: n_layer 2, n_head 4, n_embd 64, vocab_size 256, max_seq_len 16"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("steps_taken 3, beta1 0.9, beta2 0.95, eps 1e-08, weight_decay 0.1"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("lr schedule: constant, lr 0.001"), std::string::npos) << out;
  EXPECT_NE(out.find("position 3"), std::string::npos) << out;
  EXPECT_NE(out.find("data: next_sequence 12, seq_len 16"), std::string::npos) << out;  // 3 x B=4
  const uintmax_t rank0_bytes = fs::file_size(step3() / "rank-00000.bin");
  EXPECT_NE(line_with(out, "rank-00000.bin").find(std::to_string(rank0_bytes) + " bytes"),
            std::string::npos)
      << out;

  const std::string wte = line_with(out, "model/wte.weight ");
  EXPECT_NE(wte.find("[256, 64]"), std::string::npos) << out;
  EXPECT_NE(wte.find(std::to_string(256 * 64 * 4)), std::string::npos) << wte;
  EXPECT_NE(line_with(out, "optim/exp_avg_sq/h.1.mlp.c_fc.weight").find("[64, 256]"),
            std::string::npos)
      << out;
  // Totals: every parameter, both AdamW moments of it, all in the one data file.
  const Gpt2Config cfg = tiny();
  int64_t params = 0;
  for (const std::string& n : gpt2_parameter_names(cfg)) {
    int64_t numel = 1;
    for (int64_t d : gpt2_parameter_shape(cfg, n)) numel *= d;
    params += numel;
  }
  const size_t tensors = 3 * gpt2_parameter_names(cfg).size();
  EXPECT_NE(out.find("total: " + std::to_string(tensors) + " tensors, " +
                     std::to_string(3 * params * 4) + " bytes"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("in 1 data file of " + std::to_string(rank0_bytes) + " bytes"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find(std::to_string(params) + " parameters"), std::string::npos) << out;
  EXPECT_EQ(out.find("verified"), std::string::npos) << out;

  const testing::CommandResult v =
      testing::run_peng({"ckpt", "inspect", step3().string(), "--verify"});
  ASSERT_EQ(v.exit_code, 0) << v.stderr_text;
  EXPECT_NE(v.stdout_text.find("verified: " + std::to_string(tensors) + " tensors, " +
                               std::to_string(3 * params * 4) + " bytes, all checksums match"),
            std::string::npos)
      << v.stdout_text;
}

TEST_F(CkptCommand, VerifyFindsAFlippedByte) {
  testing::TempDir tmp;
  const fs::path copy = tmp / "step-00000003";
  fs::copy(step3(), copy, fs::copy_options::recursive);
  const fs::path data = copy / "rank-00000.bin";
  std::string bytes = testing::read_file(data);
  ASSERT_GT(bytes.size(), 0u);
  bytes[bytes.size() / 2] ^= 0x01;
  testing::write_file(data, bytes);

  // The manifest is intact: plain inspect still works; reading the data does not.
  EXPECT_EQ(testing::run_peng({"ckpt", "inspect", copy.string()}).exit_code, 0);
  const testing::CommandResult r =
      testing::run_peng({"ckpt", "inspect", copy.string(), "--verify"});
  expect_one_error(r, {"checksum", "rank-00000.bin", copy.string()});
  EXPECT_EQ(r.stdout_text.find("verified"), std::string::npos) << r.stdout_text;
}

TEST_F(CkptCommand, BadFoldersGiveOneErrorNamingThem) {
  testing::TempDir tmp;
  // A folder that is no checkpoint: the Hugging Face export.
  testing::CommandResult r =
      testing::run_peng({"ckpt", "export", exported().string(), "--to", (tmp / "x").string()});
  expect_one_error(r, {exported().string(), "not a checkpoint"});
  EXPECT_FALSE(fs::exists(tmp / "x"));
  // No folder at all.
  r = testing::run_peng({"ckpt", "inspect", (tmp / "missing").string()});
  expect_one_error(r, {(tmp / "missing").string(), "no such folder"});
  // A damaged manifest.
  const fs::path copy = tmp / "step-00000003";
  fs::copy(step3(), copy, fs::copy_options::recursive);
  std::string manifest = testing::read_file(copy / "manifest.pb");
  manifest[manifest.size() - 3] ^= 0x40;
  testing::write_file(copy / "manifest.pb", manifest);
  r = testing::run_peng({"ckpt", "export", copy.string(), "--to", (tmp / "y").string()});
  expect_one_error(r, {(copy / "manifest.pb").string(), "checksum mismatch"});
  // A data file cut short.
  fs::copy_file(step3() / "manifest.pb", copy / "manifest.pb",
                fs::copy_options::overwrite_existing);
  fs::resize_file(copy / "rank-00000.bin", fs::file_size(copy / "rank-00000.bin") - 4);
  r = testing::run_peng({"ckpt", "export", copy.string(), "--to", (tmp / "z").string()});
  expect_one_error(r, {"rank-00000.bin", "truncated"});
}

}  // namespace
}  // namespace peng
