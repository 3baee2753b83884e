// The added tokens of tokenizer.json and the special tokens of tokenizer_config.json.
#include <algorithm>

#include "peng/core/error.h"
#include "peng/core/tokenizer/hf_tokenizer_json.h"

namespace peng {

namespace {

using json = JsonFile::json;

AddedToken parse_added_token(const JsonFile& file, const json& t, const std::string& key) {
  if (!t.is_object()) file.fail(key, "is not a JSON object");
  AddedToken tok;
  const json& content = JsonFile::at(t, "content");
  if (!content.is_string() || content == "")
    file.fail(key + ".content", "is not a non-empty string");
  tok.content = content.get<std::string>();
  const json& id = JsonFile::at(t, "id");
  if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
    file.fail(key + ".id", id.dump() + " is not a token id (an integer in [0, 2^31))");
  }
  tok.id = id.get<uint32_t>();
  tok.special = file.get_bool(t, "special", key + ".special", false);
  tok.single_word = file.get_bool(t, "single_word", key + ".single_word", false);
  tok.lstrip = file.get_bool(t, "lstrip", key + ".lstrip", false);
  tok.rstrip = file.get_bool(t, "rstrip", key + ".rstrip", false);
  tok.normalized = file.get_bool(t, "normalized", key + ".normalized", !tok.special);
  return tok;
}

// The id Hugging Face gives a token it adds on loading (AddedVocabulary::add_tokens): the
// vocabulary's id for a content the model has, else the next id after the model's vocabulary
// and the tokens added so far.
uint32_t hf_assigned_id(const AddedToken& tok,
                        const std::unordered_map<std::string, uint32_t>& vocab,
                        const std::vector<AddedToken>& added_so_far) {
  auto it = vocab.find(tok.content);
  if (it != vocab.end()) return it->second;
  const uint32_t model_size = uint32_t(vocab.size());
  if (added_so_far.empty()) return model_size;
  uint32_t max_id = 0;
  for (const AddedToken& a : added_so_far) max_id = std::max(max_id, a.id);
  return max_id >= model_size || model_size == 0 ? max_id + 1 : model_size;
}

// A special-token field of tokenizer_config.json: a string, {"content": string, ...} or null.
std::optional<std::string> config_token(const JsonFile& file, const char* name) {
  const json& v = JsonFile::at(file.root(), name);
  if (v.is_null()) return std::nullopt;
  if (v.is_string()) return v.get<std::string>();
  const json& content = JsonFile::at(v, "content");
  if (!content.is_string()) file.fail(name, "is neither a string, {\"content\": ...} nor null");
  return content.get<std::string>();
}

}  // namespace

void read_added_tokens(const JsonFile& file, const json& list,
                       const std::unordered_map<std::string, uint32_t>& vocab,
                       HfTokenizerSpec& spec) {
  if (list.is_null()) return;
  if (!list.is_array()) file.fail("added_tokens", "is not a JSON array");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string key = "added_tokens[" + std::to_string(i) + "]";
    const AddedToken tok = parse_added_token(file, list[i], key);
    for (const AddedToken& a : spec.added_tokens) {
      if (a.content == tok.content) {
        file.fail(key + ".content", json(tok.content).dump() + " is added twice");
      }
    }
    const uint32_t expected = hf_assigned_id(tok, vocab, spec.added_tokens);
    if (tok.id != expected) {
      file.fail(key + ".id", std::to_string(tok.id) + " is not the id Hugging Face gives " +
                                 json(tok.content).dump() + " on loading (" +
                                 std::to_string(expected) + ")");
    }
    if (tok.id >= spec.id_bytes.size()) spec.id_bytes.resize(size_t(tok.id) + 1);
    spec.id_bytes[tok.id] = tok.content;  // an added token decodes to its content
    if (tok.content == "<|endoftext|>") spec.endoftext = tok.id;
    spec.added_tokens.push_back(tok);
  }
}

void read_tokenizer_config(const std::string& path, HfTokenizerSpec& spec) {
  const JsonFile file(path, "tokenizer_config.json");
  auto resolve = [&](const char* name) -> std::optional<uint32_t> {
    const std::optional<std::string> content = config_token(file, name);
    if (!content) return std::nullopt;
    for (const AddedToken& a : spec.added_tokens) {
      if (a.content == *content) return a.id;
    }
    file.fail(name, json(*content).dump() + " is not an added token of tokenizer.json");
  };
  spec.bos = resolve("bos_token");
  spec.eos = resolve("eos_token");
  spec.add_bos = file.get_bool(file.root(), "add_bos_token", "add_bos_token", true);
}

}  // namespace peng
