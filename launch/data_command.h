// `peng data`: turns text files into token shards for training.
//
//   peng data --input FILE [--input FILE ...] --tokenizer byte|DIR --out-train PATH
//             [--out-val PATH --val-fraction 0.05] [--split-on-blank-lines] [--wide]
//
// Each input (a file, or `-` for standard input) is one document, or with
// --split-on-blank-lines each run of text between blank lines is one. With a tokenizer that has
// an end-of-text token (GPT-2 BPE), every document is preceded by it, as llm.c's data scripts
// do, so documents are separated by eot. The tokens are split by count: the last
// round(val_fraction * total) go to --out-val, the rest to --out-train. Shards hold uint16
// tokens when the vocabulary fits, uint32 otherwise (or with --wide).
// Prints one summary line. Bad inputs throw peng::InputError naming the file or flag.
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
  bool wide = false;
};

struct DataCommandResult {
  int64_t documents = 0;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  std::string tokenizer;  // Tokenizer::name()
};

// Runs the conversion (no printing). Throws InputError / IoError.
DataCommandResult run_data_command(const DataCommandOptions& options);

// Registers the `data` subcommand on app; its callback runs run_data_command and prints the
// summary line.
void add_data_command(CLI::App& app);

}  // namespace peng
