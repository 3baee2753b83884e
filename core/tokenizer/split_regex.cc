#include "peng/core/tokenizer/split_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstring>
#include <memory>

#include "peng/core/error.h"
#include "peng/core/tokenizer/utf8.h"

namespace peng {

std::string oniguruma_to_pcre2(const std::string& pattern, const std::string& what) {
  std::string out;
  out.reserve(pattern.size() + 64);
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c != '\\' || i + 1 == pattern.size()) {
      out += c;
      continue;
    }
    const char e = pattern[++i];
    if (e == 's') {
      out += "\\p{White_Space}";
    } else if (e == 'S') {
      out += "\\P{White_Space}";
    } else if (std::strchr("hHwWbBRXKyYO", e) != nullptr) {
      throw InputError(detail::concat(what, ": the escape \\", e,
                                      " means different things to Hugging Face's regex engine "
                                      "(Oniguruma) and to PCRE2, so it is not supported"));
    } else {
      out += c;
      out += e;
    }
  }
  return out;
}

SplitRegex::SplitRegex(const std::string& pattern, const std::string& what)
    : translated_(oniguruma_to_pcre2(pattern, what)) {
  std::unique_ptr<pcre2_compile_context, decltype(&pcre2_compile_context_free)> ctx(
      pcre2_compile_context_create(nullptr), &pcre2_compile_context_free);
  PENG_CHECK(ctx != nullptr, "PCRE2: out of memory for a compile context");
  pcre2_set_newline(ctx.get(), PCRE2_NEWLINE_LF);
  int err = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated_.data()), translated_.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &offset, ctx.get());
  if (code_ == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    throw InputError(detail::concat(what, ": the regex ", pattern, " does not compile (PCRE2, ",
                                    translated_, ", at offset ", offset,
                                    "): ", reinterpret_cast<const char*>(buf)));
  }
  pcre2_jit_compile(code_,
                    PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is the fallback
}

SplitRegex::~SplitRegex() {
  if (code_ != nullptr) pcre2_code_free(code_);
}

SplitRegex::SplitRegex(SplitRegex&& other) noexcept
    : code_(other.code_), translated_(std::move(other.translated_)) {
  other.code_ = nullptr;
}

SplitRegex::MatchData::MatchData() : md_(pcre2_match_data_create(1, nullptr)) {
  PENG_CHECK(md_ != nullptr, "PCRE2: out of memory for match data");
}

SplitRegex::MatchData::~MatchData() { pcre2_match_data_free(md_); }

// Hugging Face's Pattern::find_matches over Oniguruma's find_iter: a gap before each match, the
// match, and the rest; an empty match right where the previous match ended is skipped (the
// search moves on one character), any other empty match still ends the gap before it.
void SplitRegex::split(std::string_view text, MatchData& md,
                       std::vector<std::string_view>& pieces) const {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t prev = 0, search = 0, last_end = SIZE_MAX;
  auto emit = [&](size_t b, size_t e) {
    if (e > b) pieces.push_back(text.substr(b, e - b));
  };
  while (search <= n) {
    const int rc = pcre2_match(code_, subject, n, search, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    size_t b = search, e = search;
    if (rc >= 0) {
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      b = ov[0];
      e = ov[1];
    } else if (search < n) {
      // A resource limit on a pathological input: take one character as a match rather than
      // fail (never reached on ordinary text).
      e = search + utf8_char_len(subject + search, n - search);
    }
    if (b == e && last_end == e) {
      if (search == n) break;
      search += utf8_char_len(subject + search, n - search);
      continue;
    }
    emit(prev, b);
    emit(b, e);
    prev = last_end = search = e;
  }
  emit(prev, n);
}

}  // namespace peng
