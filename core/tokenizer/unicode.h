// Unicode services for the Hugging Face tokenizer, from ICU (libicu): NFC normalization and the
// character classes that Hugging Face's added-token rules test. ICU is the implementation Node.js
// (and so the JavaScript peer of the tests) uses for String.prototype.normalize; Hugging Face's
// Rust code uses the unicode-normalization tables, which agree on every assigned character.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace peng {

// The NFC form of well-formed UTF-8 `text`, or nullopt when `text` already is in NFC (the common
// case, found without copying: ASCII and most text pass a quick check).
std::optional<std::string> nfc_if_changed(std::string_view text);

// Unicode White_Space (Rust's char::is_whitespace, the regex crate's \s).
bool is_white_space(uint32_t cp);

// The regex crate's Unicode \w: Alphabetic, a mark (M), a decimal digit (Nd), a connector
// punctuation (Pc) or Join_Control.
bool is_word_char(uint32_t cp);

}  // namespace peng
