// HfTokenizer: a Hugging Face `tokenizer.json` byte-level BPE tokenizer (the Llama 3 and
// Qwen2/Qwen3 families), giving the ids Hugging Face's tokenizers gives for
// encode(text, add_special_tokens=False).
//
// Loaded from a folder: DIR/tokenizer.json, and DIR/tokenizer_config.json when present. What
// is accepted is listed in hf_tokenizer_json.h; anything else is an InputError naming the file
// and the JSON key, never a silently different tokenizer. encode runs Hugging Face's pipeline:
//   1. added tokens (special or not) are found in the raw text: leftmost-longest, with their
//      single_word / lstrip / rstrip flags (added_tokens.h), each one its id;
//   2. the text between them is normalized (NFC when tokenizer.json asks, via ICU), then split
//      again by the added tokens marked normalized;
//   3. each remaining piece is split by the pre-tokenizer patterns in order (PCRE2 running the
//      Oniguruma patterns, split_regex.h), Isolated;
//   4. each pre-token's bytes go through the BPE merges (byte_level_bpe.h).
// decode writes each token's bytes (an added token: its content) and joins them.
//
// Invalid UTF-8 (Hugging Face takes only valid strings): after step 1 the text is cut into
// maximal well-formed runs, which go through steps 2-4, and maximal runs of invalid bytes, each
// BPE'd as one pre-token. Valid text encodes exactly as Hugging Face does; nothing throws.
// Round trip: decode(encode(s)) == normalize(s), which is s itself without a normalizer, or
// for NFC text, or for any bytes outside the valid runs; NFC cannot be undone. (Added tokens
// with lstrip/rstrip, which Llama 3 and Qwen do not use, also swallow the whitespace they
// strip, as in Hugging Face.)
//
// eot_token() (the separator `peng data` writes before every document) follows how the
// families pretrain:
//   - tokenizer_config.json's bos_token, unless add_bos_token is false: Llama 3 starts every
//     document with <|begin_of_text|> (Hugging Face's Llama 3 tokenizer adds it to each
//     encode);
//   - else "<|endoftext|>" when it is an added token: Qwen2/Qwen3 have no bos and separate
//     pretraining documents with <|endoftext|> (their eos_token, <|im_end|> in the chat
//     models, ends a chat turn, not a document);
//   - else tokenizer_config.json's eos_token; else none.
// Thread-safe: encode and decode may run on several threads at once.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "peng/core/tokenizer/tokenizer.h"

namespace peng {

class HfTokenizer : public Tokenizer {
 public:
  // Loads DIR/tokenizer.json (+ DIR/tokenizer_config.json). Throws InputError naming the file
  // and key at fault.
  explicit HfTokenizer(const std::string& dir);
  ~HfTokenizer() override;

  std::vector<uint32_t> encode(std::string_view text) const override;
  // Throws InputError on an id that is not a token.
  std::string decode(const std::vector<uint32_t>& ids) const override;
  // Largest id + 1 over the vocabulary and the added tokens.
  int64_t vocab_size() const override;
  std::optional<uint32_t> eot_token() const override;
  std::string name() const override;  // "hf-bpe (DIR)"

  // The text the model sees after normalization (step 2 above; added tokens kept as they are).
  std::string normalize(std::string_view text) const;
  // The id of a vocabulary token as spelled in tokenizer.json (e.g. "Ġthe"), or of an added
  // token's content.
  std::optional<uint32_t> token_id(std::string_view token) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace peng
