// Tokenizers: text bytes <-> token ids.
//
// Tokenizer is the interface the data tools use; ByteTokenizer (this file) maps each byte to
// its own id, Gpt2Bpe (gpt2_bpe.h) reproduces OpenAI GPT-2's byte-level BPE exactly, and
// HfTokenizer (hf_tokenizer.h) Hugging Face tokenizer.json byte-level BPEs (Llama 3, Qwen2/3).
// make_tokenizer picks one from a spec string.
//
// Contract: encode accepts any bytes (text need not be valid UTF-8) and never throws on its
// input; decode(encode(s)) == s for every s, except that a tokenizer whose tokenizer.json
// normalizes (NFC) gives back the normalized text (HfTokenizer::normalize(s); s itself when s is
// in NFC or without a normalizer), and added tokens that strip whitespace drop it (hf_tokenizer.h).
// decode throws InputError on an id outside the vocabulary. Implementations are safe to call from
// several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace peng {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<uint32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<uint32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  // The end-of-text id that separates documents, when the vocabulary has one.
  virtual std::optional<uint32_t> eot_token() const = 0;
  // Short description for messages: "byte", "gpt2-bpe (DIR)", "hf-bpe (DIR)".
  virtual std::string name() const = 0;
};

// Byte-level identity: byte b <-> id b. Vocabulary 256, no end-of-text token.
class ByteTokenizer : public Tokenizer {
 public:
  std::vector<uint32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<uint32_t>& ids) const override;
  int64_t vocab_size() const override { return 256; }
  std::optional<uint32_t> eot_token() const override { return std::nullopt; }
  std::string name() const override { return "byte"; }
};

// "byte" => ByteTokenizer; a folder holding a Hugging Face tokenizer.json => HfTokenizer (which
// also reads tokenizer_config.json there); a folder holding GPT-2's encoder.json and vocab.bpe
// => Gpt2Bpe. Throws InputError naming the spec when it is none of these, or naming the file
// (and key) at fault when a file is missing, malformed or asks for what is not supported.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec);

}  // namespace peng
