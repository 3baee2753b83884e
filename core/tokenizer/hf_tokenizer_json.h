// Reading a Hugging Face tokenizer folder (tokenizer.json, and tokenizer_config.json when
// present) into the parts HfTokenizer runs. Only what byte-level BPE tokenizers such as Llama 3
// and Qwen2/Qwen3 use is accepted:
//   model             "BPE": vocab (object), merges ("a b" strings or ["a", "b"] pairs),
//                     ignore_merges, byte_fallback false, dropout null/0,
//                     continuing_subword_prefix and end_of_word_suffix null or "";
//                     every byte must have its token; unk_token and fuse_unk are accepted and
//                     unused (a byte-level vocabulary never needs an unknown token)
//   normalizer        null or "NFC"
//   pre_tokenizer     "ByteLevel", or "Sequence" of "Split" (Regex pattern, behavior
//                     "Isolated", invert false) ending in "ByteLevel"; ByteLevel with
//                     add_prefix_space false; its use_regex (default true) adds GPT-2's pattern
//   added_tokens      id, content, special, single_word, lstrip, rstrip, normalized; each id
//                     must be the one Hugging Face gives the token on loading
//   decoder           "ByteLevel"
//   truncation, padding   null
//   post_processor    not read: peng encodes as Hugging Face's encode(add_special_tokens=False)
// Anything else throws InputError naming the file and the JSON key and value at fault.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <unordered_map>

#include "peng/core/tokenizer/added_tokens.h"
#include "peng/core/tokenizer/byte_level_bpe.h"
#include "peng/core/tokenizer/json_file.h"

namespace peng {

struct HfTokenizerSpec {
  std::string dir;
  TokenIdMap vocab;  // token bytes -> id (tokens of byte-level spelling)
  std::vector<std::optional<std::string>> id_bytes;  // id -> what decode writes; nullopt: no token
  std::vector<ByteLevelBpe::Merge> merges;           // rank order
  bool ignore_merges = false;
  bool nfc = false;
  struct Pattern {
    std::string regex;
    std::string key;  // where it came from, for messages: "pre_tokenizer.pretokenizers[0]"
  };
  std::vector<Pattern> split_patterns;  // applied in order, each to the previous one's pieces
  std::vector<AddedToken> added_tokens;
  std::optional<uint32_t> bos, eos, endoftext;  // from tokenizer_config.json / added_tokens
  bool add_bos = true;  // tokenizer_config.json add_bos_token (absent: true)
};

// Reads DIR/tokenizer.json and, if present, DIR/tokenizer_config.json. Throws InputError (see
// the file comment) naming the file and key.
HfTokenizerSpec read_hf_tokenizer(const std::string& dir);

// The bytes a token spelled in the byte-level alphabet (GPT-2's bytes_to_unicode: "Ġthe")
// stands for, or nullopt when it has a character outside that alphabet.
std::optional<std::string> byte_level_to_bytes(const std::string& token);

// Steps of read_hf_tokenizer (hf_tokenizer_config.cc). read_added_tokens reads the
// "added_tokens" array of `file` (`vocab` is model.vocab as spelled in the file) and notes the id
// of "<|endoftext|>" when it is one of them.
void read_added_tokens(const JsonFile& file, const JsonFile::json& list,
                       const std::unordered_map<std::string, uint32_t>& vocab,
                       HfTokenizerSpec& spec);
// Reads bos_token, eos_token (each a string, an object with "content", or null; an added token)
// and add_bos_token from tokenizer_config.json at `path`.
void read_tokenizer_config(const std::string& path, HfTokenizerSpec& spec);

}  // namespace peng
