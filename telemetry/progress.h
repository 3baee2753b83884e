// Rank 0's terminal progress line: step, loss, tokens/s, ETA.
// On a terminal the line is redrawn in place; otherwise one line every `every` steps.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace peng {

class ProgressLine {
 public:
  // `steps`: print step lines; `messages`: print message() lines (false on ranks != 0).
  ProgressLine(int64_t total_steps, int every, bool steps, bool messages, std::FILE* out = stdout);

  void step(int64_t step, double loss, double tokens_per_s, double elapsed_s);
  // Prints a message on its own line without garbling the progress line.
  void message(const std::string& text);
  // Ends the in-place line (if any) so later output starts on a fresh line.
  void finish();

 private:
  int64_t total_;
  int every_;
  bool enabled_, messages_, tty_;
  bool dirty_ = false;
  std::FILE* out_;
};

// "1h02m", "3m05s", "42s"
std::string format_duration(double seconds);

}  // namespace peng
