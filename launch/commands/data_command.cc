#include "peng/launch/commands/data_command.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string_view>

#include <CLI/CLI.hpp>

#include "peng/core/data/token_shard.h"
#include "peng/core/error.h"
#include "peng/core/tokenizer/tokenizer.h"

namespace peng {

namespace {

namespace fs = std::filesystem;

std::string read_input(const std::string& path) {
  if (path == "-") {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    PENG_INPUT_CHECK(!std::cin.bad(), "cannot read input - (standard input)");
    return text;
  }
  std::error_code ec;
  PENG_INPUT_CHECK(!fs::is_directory(path, ec), "input ", path, " is a folder, not a text file");
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    const int err = errno;
    throw InputError(detail::concat("cannot read input ", path, ": ", std::strerror(err)));
  }
  std::ostringstream os;
  os << f.rdbuf();
  PENG_INPUT_CHECK(!f.bad(), "cannot read input ", path);
  return os.str();
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r\f\v") == std::string_view::npos;
}

// Runs of text between blank lines (lines of only spaces/tabs); each keeps its newlines.
std::vector<std::string_view> split_blank_lines(std::string_view text) {
  std::vector<std::string_view> docs;
  size_t doc_begin = std::string_view::npos, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    end = end == std::string_view::npos ? text.size() : end + 1;
    const std::string_view line = text.substr(pos, end - pos);
    const std::string_view body = line.ends_with('\n') ? line.substr(0, line.size() - 1) : line;
    if (is_blank(body)) {
      if (doc_begin != std::string_view::npos)
        docs.push_back(text.substr(doc_begin, pos - doc_begin));
      doc_begin = std::string_view::npos;
    } else if (doc_begin == std::string_view::npos) {
      doc_begin = pos;
    }
    pos = end;
  }
  if (doc_begin != std::string_view::npos) docs.push_back(text.substr(doc_begin));
  return docs;
}

void ensure_parent_dir(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) {
    throw IoError(detail::concat("cannot create folder ", parent.string(), " for ", path, ": ",
                                 ec.message()));
  }
}

}  // namespace

DataCommandResult run_data_command(const DataCommandOptions& o) {
  PENG_INPUT_CHECK(!o.inputs.empty(), "peng data: no --input given");
  PENG_INPUT_CHECK(!o.out_train.empty(), "peng data: no --out-train given");
  if (!o.out_val.empty()) {
    PENG_INPUT_CHECK(o.val_fraction > 0 && o.val_fraction < 1, "peng data: --val-fraction ",
                     o.val_fraction, " is not in (0, 1)");
    PENG_INPUT_CHECK(
        fs::path(o.out_val).lexically_normal() != fs::path(o.out_train).lexically_normal(),
        "peng data: --out-val and --out-train are the same file ", o.out_val);
  }
  PENG_INPUT_CHECK(!(o.wide && o.narrow), "peng data: --wide and --narrow contradict each other");
  std::unique_ptr<Tokenizer> tok = make_tokenizer(o.tokenizer);
  const std::optional<uint32_t> eot = tok->eot_token();

  DataCommandResult r;
  r.tokenizer = tok->name();
  r.vocab_size = tok->vocab_size();
  // uint16 holds ids up to 65535, so a vocabulary of up to 65536 tokens.
  const bool vocab_needs_wide = r.vocab_size > 65536;
  PENG_INPUT_CHECK(!(o.narrow && vocab_needs_wide),
                   "peng data: --narrow asks for uint16 tokens, "
                   "but the tokenizer ",
                   r.tokenizer, " has a vocabulary of ", r.vocab_size,
                   " (ids above 65535 need uint32 tokens)");
  r.wide = o.wide || vocab_needs_wide;
  std::vector<uint32_t> tokens;
  for (const std::string& input : o.inputs) {
    const std::string text = read_input(input);
    std::vector<std::string_view> docs;
    if (o.split_on_blank_lines) {
      docs = split_blank_lines(text);
    } else if (!text.empty()) {
      docs.push_back(text);
    }
    for (std::string_view doc : docs) {
      if (eot) tokens.push_back(*eot);
      const std::vector<uint32_t> ids = tok->encode(doc);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
      ++r.documents;
    }
  }
  const int64_t total = int64_t(tokens.size());
  PENG_INPUT_CHECK(total > 0, "peng data: the inputs hold no text");

  int64_t n_val = 0;
  if (!o.out_val.empty()) {
    n_val = std::max<int64_t>(1, std::llround(double(total) * o.val_fraction));
    PENG_INPUT_CHECK(n_val < total, "peng data: ", total,
                     " tokens are too few to split off a validation fraction of ", o.val_fraction);
  }
  ensure_parent_dir(o.out_train);
  if (n_val > 0) {
    ensure_parent_dir(o.out_val);
    std::vector<uint32_t> val(tokens.end() - n_val, tokens.end());
    tokens.resize(size_t(total - n_val));
    write_token_shard(o.out_val, val, r.wide);
  }
  write_token_shard(o.out_train, tokens, r.wide);
  r.train_tokens = total - n_val;
  r.val_tokens = n_val;
  return r;
}

void add_data_command(CLI::App& app) {
  auto o = std::make_shared<DataCommandOptions>();
  CLI::App* cmd = app.add_subcommand("data", "tokenize text files into llm.c token shards");
  cmd->add_option("--input,-i", o->inputs, "text file, or - for standard input (repeatable)")
      ->required();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "byte, or a folder holding a Hugging Face tokenizer.json (Llama 3, Qwen3) "
                  "or GPT-2's encoder.json and vocab.bpe")
      ->capture_default_str();
  cmd->add_option("--out-train", o->out_train, "training shard to write")->required();
  cmd->add_option("--out-val", o->out_val, "validation shard to write (the last tokens)");
  cmd->add_option("--val-fraction", o->val_fraction, "fraction of tokens for --out-val")
      ->capture_default_str();
  cmd->add_flag("--split-on-blank-lines", o->split_on_blank_lines,
                "each run of text between blank lines is a document (eot before each)");
  auto* wide = cmd->add_flag("--wide", o->wide, "always write uint32 tokens (version 7 shards)");
  cmd->add_flag("--narrow", o->narrow,
                "write uint16 tokens (version 1 shards); an error when the vocabulary exceeds "
                "65536 tokens (the default picks uint32 then)")
      ->excludes(wide);
  cmd->callback([o] {
    const DataCommandResult r = run_data_command(*o);
    const std::string width =
        !r.wide   ? "uint16 tokens"
        : o->wide ? "uint32 tokens (--wide)"
                  : "uint32 tokens: vocabulary of " + std::to_string(r.vocab_size) + " > 65536";
    std::printf("peng data: %zu input%s, %lld document%s, %lld tokens (%s; %s) -> %s: %lld tokens",
                o->inputs.size(), o->inputs.size() == 1 ? "" : "s", (long long)r.documents,
                r.documents == 1 ? "" : "s", (long long)(r.train_tokens + r.val_tokens),
                r.tokenizer.c_str(), width.c_str(), o->out_train.c_str(),
                (long long)r.train_tokens);
    if (r.val_tokens > 0) {
      std::printf(", %s: %lld tokens", o->out_val.c_str(), (long long)r.val_tokens);
    }
    std::printf("\n");
  });
}

}  // namespace peng
