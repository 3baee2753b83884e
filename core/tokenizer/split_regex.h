// SplitRegex: a Hugging Face pre-tokenizer pattern, run with PCRE2 the way Hugging Face's
// tokenizers (Oniguruma) runs it, for the "Isolated" split.
//
// Hugging Face compiles patterns with Oniguruma's default syntax. The patterns are translated so
// that PCRE2 (UTF + UCP, JIT when available) matches the same text:
//   - \s and \S become \p{White_Space} and \P{White_Space}: Oniguruma's \s is exactly Unicode
//     White_Space (with U+0085, without U+180E); PCRE2's own \s adds U+180E;
//   - ^ and $ are line anchors in Oniguruma: the pattern is compiled MULTILINE, newline LF;
//   - escapes whose meaning differs between the two engines (\h \H: a hex digit in Oniguruma;
//     \w \W \b \B: different word sets; \R \X \K \y \Y \O) are refused with InputError naming
//     `what` and the escape, rather than run with another meaning.
// (?i:...) folds case the same way in both (e.g. U+017F LONG S matches s), and \p{L}, \p{N},
// lookahead and possessive quantifiers need no translation.
#pragma once

#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;

namespace peng {

// GPT-2's pattern, which Hugging Face's ByteLevel pre-tokenizer applies when use_regex is true.
inline constexpr const char* kGpt2SplitPattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class SplitRegex {
 public:
  // `what` names the pattern's origin in errors, e.g. "tokenizer.json DIR: pre_tokenizer...".
  // Throws InputError when the pattern does not compile or uses a refused escape.
  SplitRegex(const std::string& pattern, const std::string& what);
  ~SplitRegex();
  SplitRegex(SplitRegex&& other) noexcept;
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;
  SplitRegex& operator=(SplitRegex&&) = delete;

  // Per-thread match state for split(); one per encode call.
  class MatchData {
   public:
    MatchData();
    ~MatchData();
    MatchData(const MatchData&) = delete;
    MatchData& operator=(const MatchData&) = delete;
    pcre2_real_match_data_8* get() const { return md_; }

   private:
    pcre2_real_match_data_8* md_;
  };

  // Appends to `pieces` the Isolated split of well-formed UTF-8 `text`: every non-empty match
  // and every non-empty gap between matches, in order, so that they concatenate to `text`.
  // The pattern sees only `text` (lookahead stops at its end), as Hugging Face's does.
  void split(std::string_view text, MatchData& md, std::vector<std::string_view>& pieces) const;

  // The pattern as given to PCRE2 (for tests and messages).
  const std::string& pcre2_pattern() const { return translated_; }

 private:
  pcre2_real_code_8* code_ = nullptr;
  std::string translated_;
};

// The Oniguruma -> PCRE2 translation described above. Throws InputError naming `what`.
std::string oniguruma_to_pcre2(const std::string& pattern, const std::string& what);

}  // namespace peng
