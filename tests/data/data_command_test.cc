// `peng data`: text files -> token shards, through the library entry point and the CLI.
#include "peng/launch/commands/data_command.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "peng/core/data/token_shard.h"
#include "peng/core/error.h"
#include "peng/core/tokenizer/gpt2_bpe.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using peng::testing::error_lines;
using peng::testing::run_peng;
using peng::testing::TempDir;
using peng::testing::write_file;

std::vector<int32_t> shard_tokens(const fs::path& p) {
  TokenStream s(p.string());
  std::vector<int32_t> out(static_cast<size_t>(s.size()));
  s.read(0, s.size(), out.data());
  return out;
}

std::vector<int32_t> bytes_of(const std::string& s) {
  std::vector<int32_t> out;
  for (unsigned char c : s) out.push_back(c);
  return out;
}

// A tiny GPT-2 style vocabulary: 256 byte tokens (id = byte), "t h" -> 256, "th e" -> 257,
// and <|endoftext|> = 258.
void write_tiny_bpe(const fs::path& dir) {
  fs::create_directories(dir);
  nlohmann::json enc = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) enc[gpt2_bytes_to_unicode()[size_t(b)]] = b;
  enc["th"] = 256;
  enc["the"] = 257;
  enc["<|endoftext|>"] = 258;
  write_file(dir / "encoder.json", enc.dump());
  write_file(dir / "vocab.bpe", "#version: 0.2\nt h\nth e\n");
}

TEST(DataCommand, ByteTokenizerWritesOneShard) {
  TempDir dir;
  write_file(dir / "in.txt", "hello world\n");
  DataCommandOptions o;
  o.inputs = {(dir / "in.txt").string()};
  o.out_train = (dir / "out" / "train.bin").string();  // the folder is created
  const DataCommandResult r = run_data_command(o);
  EXPECT_EQ(r.documents, 1);
  EXPECT_EQ(r.train_tokens, 12);
  EXPECT_EQ(r.val_tokens, 0);
  EXPECT_EQ(shard_tokens(o.out_train), bytes_of("hello world\n"));  // no eot for bytes
  EXPECT_EQ(TokenShard(o.out_train).token_bytes(), 2);
}

TEST(DataCommand, ValidationSplitTakesTheLastTokens) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 100; ++i) text += char('a' + i % 26);
  write_file(dir / "in.txt", text);
  DataCommandOptions o;
  o.inputs = {(dir / "in.txt").string()};
  o.out_train = (dir / "train.bin").string();
  o.out_val = (dir / "val.bin").string();
  o.val_fraction = 0.1;
  const DataCommandResult r = run_data_command(o);
  EXPECT_EQ(r.train_tokens, 90);
  EXPECT_EQ(r.val_tokens, 10);
  EXPECT_EQ(shard_tokens(o.out_train), bytes_of(text.substr(0, 90)));
  EXPECT_EQ(shard_tokens(o.out_val), bytes_of(text.substr(90)));
}

TEST(DataCommand, BpeSeparatesDocumentsWithEot) {
  TempDir dir;
  write_tiny_bpe(dir / "bpe");
  write_file(dir / "a.txt", "the\n\n\nthe the\n");
  write_file(dir / "b.txt", "tea");
  DataCommandOptions o;
  o.inputs = {(dir / "a.txt").string(), (dir / "b.txt").string()};
  o.tokenizer = (dir / "bpe").string();
  o.out_train = (dir / "train.bin").string();
  DataCommandResult r = run_data_command(o);
  EXPECT_EQ(r.documents, 2);
  // eot before each input; "the" -> 257, " the" -> [32, 257] (no "Ġ t" merge here).
  EXPECT_EQ(shard_tokens(o.out_train),
            (std::vector<int32_t>{258, 257, 10, 10, 10, 257, 32, 257, 10, 258, 't', 'e', 'a'}));

  o.split_on_blank_lines = true;  // "the\n" | "the the\n" | "tea"
  r = run_data_command(o);
  EXPECT_EQ(r.documents, 3);
  EXPECT_EQ(shard_tokens(o.out_train),
            (std::vector<int32_t>{258, 257, 10, 258, 257, 32, 257, 10, 258, 't', 'e', 'a'}));
}

TEST(DataCommand, WideShards) {
  TempDir dir;
  write_file(dir / "in.txt", "abc");
  DataCommandOptions o;
  o.inputs = {(dir / "in.txt").string()};
  o.out_train = (dir / "train.bin").string();
  o.wide = true;
  run_data_command(o);
  EXPECT_EQ(TokenShard(o.out_train).token_bytes(), 4);
  EXPECT_EQ(shard_tokens(o.out_train), bytes_of("abc"));
}

// A Hugging Face tokenizer.json folder whose vocabulary goes past uint16: the 256 byte tokens,
// "th" at id 70000 and the added token <|endoftext|> (id 257, where Hugging Face puts it);
// tokenizer_config.json names no bos, so <|endoftext|> separates documents.
void write_wide_hf_tokenizer(const fs::path& dir) {
  fs::create_directories(dir);
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[gpt2_bytes_to_unicode()[size_t(b)]] = b;
  vocab["th"] = 70000;
  const nlohmann::json tok = {
      {"version", "1.0"},
      {"added_tokens", {{{"id", 257}, {"content", "<|endoftext|>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"t h"}}}}};
  write_file(dir / "tokenizer.json", tok.dump());
  write_file(dir / "tokenizer_config.json", R"({"bos_token": null, "eos_token": "<|endoftext|>"})");
}

TEST(DataCommand, LargeVocabularyWritesUint32) {
  TempDir dir;
  write_wide_hf_tokenizer(dir / "hf");
  write_file(dir / "in.txt", "the\n\nthe");
  DataCommandOptions o;
  o.inputs = {(dir / "in.txt").string()};
  o.tokenizer = (dir / "hf").string();
  o.out_train = (dir / "train.bin").string();
  o.split_on_blank_lines = true;
  const DataCommandResult r = run_data_command(o);
  EXPECT_EQ(r.vocab_size, 70001);
  EXPECT_TRUE(r.wide);
  EXPECT_EQ(r.tokenizer, "hf-bpe (" + o.tokenizer + ")");
  EXPECT_EQ(TokenShard(o.out_train).token_bytes(), 4);
  EXPECT_EQ(shard_tokens(o.out_train),
            (std::vector<int32_t>{257, 70000, 'e', 10, 257, 70000, 'e'}));

  o.narrow = true;  // uint16 cannot hold id 70000
  try {
    run_data_command(o);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--narrow"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("70001"), std::string::npos) << e.what();
  }
}

TEST(DataCommand, NarrowAndWideFlags) {
  TempDir dir;
  write_file(dir / "in.txt", "abc");
  DataCommandOptions o;
  o.inputs = {(dir / "in.txt").string()};
  o.out_train = (dir / "train.bin").string();
  o.narrow = true;
  EXPECT_FALSE(run_data_command(o).wide);
  EXPECT_EQ(TokenShard(o.out_train).token_bytes(), 2);
  o.wide = true;
  EXPECT_THROW(run_data_command(o), InputError);
}

TEST(DataCommand, BadInputsThrowInputError) {
  TempDir dir;
  write_file(dir / "in.txt", "abc");
  write_file(dir / "empty.txt", "");
  DataCommandOptions o;
  o.inputs = {(dir / "missing.txt").string()};
  o.out_train = (dir / "train.bin").string();
  try {
    run_data_command(o);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos) << e.what();
  }
  o.inputs = {(dir / "empty.txt").string()};
  EXPECT_THROW(run_data_command(o), InputError);  // no text at all
  o.inputs = {(dir / "in.txt").string()};
  o.out_val = (dir / "val.bin").string();
  o.val_fraction = 1.5;
  EXPECT_THROW(run_data_command(o), InputError);
  o.val_fraction = 0.5;
  o.out_val = o.out_train;
  EXPECT_THROW(run_data_command(o), InputError);
  o.out_val.clear();
  o.tokenizer = (dir / "no_tokenizer").string();
  EXPECT_THROW(run_data_command(o), InputError);
}

// ---- the CLI -------------------------------------------------------------------------------

bool have_peng() { return fs::exists(peng::testing::peng_binary()); }

TEST(DataCommandCli, WritesShardsAndPrintsASummary) {
  if (!have_peng()) GTEST_SKIP() << "build/bin/peng not built";
  TempDir dir;
  write_tiny_bpe(dir / "bpe");
  write_file(dir / "in.txt", "the theme\n\nthe end\n");
  const auto r =
      run_peng({"data", "--input", (dir / "in.txt").string(), "--tokenizer", (dir / "bpe").string(),
                "--out-train", (dir / "train.bin").string(), "--out-val",
                (dir / "val.bin").string(), "--val-fraction", "0.25", "--split-on-blank-lines"});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("2 documents"), std::string::npos) << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("tokens"), std::string::npos) << r.stdout_text;
  std::vector<int32_t> all = shard_tokens(dir / "train.bin");
  const std::vector<int32_t> val = shard_tokens(dir / "val.bin");
  all.insert(all.end(), val.begin(), val.end());
  // eot "the" " theme" "\n" eot "the" " end" "\n"
  EXPECT_EQ(all, (std::vector<int32_t>{258, 257, 32, 257, 'm', 'e', 10, 258, 257, 32, 'e', 'n', 'd',
                                       10}));
  EXPECT_EQ(val.size(), 4u);  // round(14 * 0.25)
}

TEST(DataCommandCli, SaysWhenTheVocabularyNeedsUint32) {
  if (!have_peng()) GTEST_SKIP() << "build/bin/peng not built";
  TempDir dir;
  write_wide_hf_tokenizer(dir / "hf");
  write_file(dir / "in.txt", "the end\n");
  const std::vector<std::string> args = {"data",
                                         "--input",
                                         (dir / "in.txt").string(),
                                         "--tokenizer",
                                         (dir / "hf").string(),
                                         "--out-train",
                                         (dir / "train.bin").string()};
  auto r = run_peng(args);
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("uint32 tokens: vocabulary of 70001 > 65536"), std::string::npos)
      << r.stdout_text;
  EXPECT_EQ(TokenShard((dir / "train.bin").string()).token_bytes(), 4);
  std::vector<std::string> narrow = args;
  narrow.push_back("--narrow");
  r = run_peng(narrow);
  EXPECT_NE(r.exit_code, 0);
  ASSERT_EQ(error_lines(r.stderr_text).size(), 1u) << r.stderr_text;
  narrow.push_back("--wide");  // the two flags exclude each other
  EXPECT_NE(run_peng(narrow).exit_code, 0);
}

TEST(DataCommandCli, BadInputIsOneErrorLine) {
  if (!have_peng()) GTEST_SKIP() << "build/bin/peng not built";
  TempDir dir;
  const std::string missing = (dir / "missing.txt").string();
  auto r = run_peng({"data", "--input", missing, "--out-train", (dir / "t.bin").string()});
  EXPECT_NE(r.exit_code, 0);
  auto errors = error_lines(r.stderr_text);
  ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
  EXPECT_NE(errors[0].find(missing), std::string::npos) << errors[0];

  write_file(dir / "in.txt", "abc");
  r = run_peng({"data", "--input", (dir / "in.txt").string(), "--tokenizer",
                (dir / "nope").string(), "--out-train", (dir / "t.bin").string()});
  EXPECT_NE(r.exit_code, 0);
  errors = error_lines(r.stderr_text);
  ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
  EXPECT_NE(errors[0].find("nope"), std::string::npos) << errors[0];
  EXPECT_FALSE(fs::exists(dir / "t.bin"));
}

}  // namespace
}  // namespace peng
