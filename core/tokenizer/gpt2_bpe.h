// Gpt2Bpe: OpenAI GPT-2's byte-level BPE tokenizer, token for token.
//
// Loaded from GPT-2's own files: `encoder.json` (token string -> id; token strings spell bytes
// through bytes_to_unicode, e.g. "Ġthe" = " the") and `vocab.bpe` ("#version" line, then one
// merge "A B" per line, earlier = higher priority). Encoding follows openai/gpt-2 encoder.py:
//   1. pre-tokenize with the GPT-2 pattern (PCRE2, UTF + UCP, JIT when available)
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      where \s is spelled out as the Unicode White_Space set that Python's `regex` module uses
//      (PCRE2's own \s also matches U+180E);
//   2. map each chunk's bytes to their single-byte tokens, then apply merges by rank: take the
//      lowest-ranked adjacent pair, merge all its occurrences left to right, repeat until no
//      pair has a rank (an O(n log n) heap implementation with exactly these semantics, so long
//      runs such as a megabyte of spaces stay fast); results are cached per chunk.
// "<|endoftext|>" in the input text is encoded as ordinary text, as GPT-2's encoder.py does;
// the end-of-text id (50256 in GPT-2) is available from eot_token() for the caller to insert.
//
// Invalid UTF-8: GPT-2 encodes Python strings, which cannot hold invalid UTF-8. Here the input
// is split into maximal valid UTF-8 runs, each pre-tokenized as above, and maximal runs of
// invalid bytes, each treated as one chunk of its own (BPE'd from its byte tokens). Nothing
// crashes, valid text encodes exactly as GPT-2 does, and decode(encode(s)) == s for any bytes.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "peng/core/tokenizer/tokenizer.h"

namespace peng {

// GPT-2's bytes_to_unicode(): the UTF-8 spelling of the character that stands for each byte in
// encoder.json and vocab.bpe (printable bytes stand for themselves; the rest map to U+0100...).
const std::array<std::string, 256>& gpt2_bytes_to_unicode();

class Gpt2Bpe : public Tokenizer {
 public:
  // Loads DIR/encoder.json and DIR/vocab.bpe.
  explicit Gpt2Bpe(const std::string& dir);
  // Throws InputError naming the file when a file is missing, unreadable or malformed: JSON
  // syntax, a non-object, an id that is not an integer in [0, size), a repeated id, a byte
  // token missing; a merge line that is not two tokens, or whose parts or result are not in
  // encoder.json (with the line number).
  Gpt2Bpe(const std::string& encoder_json_path, const std::string& vocab_bpe_path);
  ~Gpt2Bpe() override;

  std::vector<uint32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<uint32_t>& ids) const override;
  int64_t vocab_size() const override;
  std::optional<uint32_t> eot_token() const override;  // id of "<|endoftext|>" if present
  std::string name() const override;

  // The id of an encoder.json key (e.g. "Ġthe"), if present.
  std::optional<uint32_t> token_id(std::string_view token) const;
  // The bytes that id stands for. Throws InputError when id >= vocab_size().
  const std::string& token_bytes(uint32_t id) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace peng
