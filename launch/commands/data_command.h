// `peng data`: turns text files into token shards for training.
//
//   peng data --input FILE [--input FILE ...] --tokenizer byte|DIR --out-train PATH
//             [--out-val PATH --val-fraction 0.05] [--split-on-blank-lines] [--wide|--narrow]
//
// DIR is a Hugging Face tokenizer folder (tokenizer.json, e.g. Llama 3 or Qwen3) or GPT-2's
// (encoder.json + vocab.bpe); see make_tokenizer. Each input (a file, or `-` for standard
// input) is one document, or with --split-on-blank-lines each run of text between blank lines
// is one. With a tokenizer that has a document separator (Tokenizer::eot_token: GPT-2's
// <|endoftext|>, Llama 3's <|begin_of_text|>, Qwen's <|endoftext|>), every document is
// preceded by it, as llm.c's data scripts do. The tokens are split by count: the last
// round(val_fraction * total) go to --out-val, the rest to --out-train. Shards hold uint16
// tokens when every id of the vocabulary fits (vocab_size <= 65536), uint32 otherwise, and
// uint32 with --wide; --narrow insists on uint16 and is an error for a larger vocabulary.
// Prints one summary line, which names the token width. Bad inputs throw peng::InputError
// naming the file or flag.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace peng {

struct DataCommandOptions {
  std::vector<std::string> inputs;  // files; "-" = stdin
  std::string tokenizer = "byte";
  std::string out_train;
  std::string out_val;         // empty: no validation shard
  double val_fraction = 0.05;  // used only with out_val
  bool split_on_blank_lines = false;
  bool wide = false;    // always uint32 tokens
  bool narrow = false;  // uint16 tokens, or an error when the vocabulary does not fit
};

struct DataCommandResult {
  int64_t documents = 0;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  std::string tokenizer;  // Tokenizer::name()
  int64_t vocab_size = 0;
  bool wide = false;  // uint32 tokens were written
};

// Runs the conversion (no printing). Throws InputError / IoError.
DataCommandResult run_data_command(const DataCommandOptions& options);

// Registers the `data` subcommand on app; its callback runs run_data_command and prints the
// summary line.
void add_data_command(CLI::App& app);

}  // namespace peng
