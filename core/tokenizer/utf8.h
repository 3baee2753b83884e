// UTF-8 helpers shared by the tokenizers: well-formedness (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), encoding and decoding of code points, and the split of
// arbitrary bytes into maximal well-formed runs and maximal runs of bytes that are not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace peng {

// Length of the well-formed UTF-8 character at p (1..4), or 0 when the bytes there are not one
// (stray continuation byte, overlong form, surrogate, above U+10FFFF, cut short). n >= 1.
size_t utf8_char_len(const unsigned char* p, size_t n);

// The code point of the well-formed character of `len` bytes at p (len from utf8_char_len).
uint32_t utf8_code_point(const unsigned char* p, size_t len);

// Appends the UTF-8 spelling of code point cp (<= U+10FFFF) to out.
void utf8_append(uint32_t cp, std::string& out);
std::string utf8_encode(uint32_t cp);

// Decodes a UTF-8 string into code points; false when it is not well-formed.
bool utf8_decode(std::string_view s, std::vector<uint32_t>& cps);

// Calls f(run, valid) for each maximal run of `text`, in order: valid runs are well-formed
// UTF-8, the others are bytes of which none starts a well-formed character.
template <class F>
void for_each_utf8_run(std::string_view text, F&& f) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const bool valid = utf8_char_len(p + i, n - i) > 0;
    size_t j = i;
    while (j < n) {
      const size_t len = utf8_char_len(p + j, n - j);
      if ((len > 0) != valid) break;
      j += valid ? len : 1;
    }
    f(text.substr(i, j - i), valid);
    i = j;
  }
}

}  // namespace peng
