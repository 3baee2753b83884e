#include "peng/core/tokenizer/hf_tokenizer_json.h"

#include <filesystem>
#include <unordered_map>

#include "peng/core/error.h"
#include "peng/core/tokenizer/gpt2_bpe.h"
#include "peng/core/tokenizer/split_regex.h"
#include "peng/core/tokenizer/utf8.h"

namespace peng {

namespace {

using json = JsonFile::json;
namespace fs = std::filesystem;

struct Loader {
  const JsonFile& file;
  HfTokenizerSpec& spec;
  std::unordered_map<std::string, uint32_t> token_ids;  // vocab as spelled in the file

  void model(const json& m);
  void vocab(const json& v);
  void merges(const json& list);
  uint32_t merge_part(const std::string& token, const std::string& key);
  void normalizer(const json& n);
  void pre_tokenizer(const json& p);
  void byte_level(const json& p, const std::string& key);
  void split(const json& p, const std::string& key);
  void decoder(const json& d);
};

void Loader::model(const json& m) {
  const std::string type = file.get_type(m, "model");
  if (type != "BPE") file.unsupported("model.type", type, "peng reads byte-level \"BPE\" models");
  if (file.get_bool(m, "byte_fallback", "model.byte_fallback", false)) {
    file.unsupported("model.byte_fallback", true, "a byte-level BPE needs no byte fallback");
  }
  const json& dropout = JsonFile::at(m, "dropout");
  if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0)) {
    file.unsupported("model.dropout", dropout, "null: encoding is deterministic");
  }
  for (const char* name : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json& v = JsonFile::at(m, name);
    if (!v.is_null() && v != "") file.unsupported(std::string("model.") + name, v, "null or \"\"");
  }
  spec.ignore_merges = file.get_bool(m, "ignore_merges", "model.ignore_merges", false);
  vocab(JsonFile::at(m, "vocab"));
  merges(JsonFile::at(m, "merges"));
}

void Loader::vocab(const json& v) {
  if (!v.is_object() || v.empty()) file.fail("model.vocab", "is not a non-empty JSON object");
  for (const auto& [token, value] : v.items()) {
    const std::string key = "model.vocab[" + json(token).dump() + "]";
    if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
        value.get<int64_t>() > INT32_MAX) {
      file.fail(key, value.dump() + " is not a token id (an integer in [0, 2^31))");
    }
    const uint32_t id = value.get<uint32_t>();
    if (id >= spec.id_bytes.size()) spec.id_bytes.resize(size_t(id) + 1);
    if (spec.id_bytes[id]) file.fail(key, "reuses id " + std::to_string(id));
    // Hugging Face's ByteLevel decoder writes a token outside the byte-level alphabet as is.
    const std::optional<std::string> bytes = byte_level_to_bytes(token);
    spec.id_bytes[id] = bytes ? *bytes : token;
    if (bytes) spec.vocab.emplace(*bytes, id);
    token_ids.emplace(token, id);
  }
  for (int b = 0; b < 256; ++b) {
    if (!spec.vocab.count(std::string(1, char(b)))) {
      file.fail("model.vocab", "has no token for byte " + std::to_string(b) + " (" +
                                   json(gpt2_bytes_to_unicode()[size_t(b)]).dump() +
                                   "): not a byte-level vocabulary");
    }
  }
}

uint32_t Loader::merge_part(const std::string& token, const std::string& key) {
  auto it = token_ids.find(token);
  if (it == token_ids.end()) file.fail(key, "uses " + json(token).dump() + ", not in model.vocab");
  return it->second;
}

void Loader::merges(const json& list) {
  if (!list.is_array()) file.fail("model.merges", "is not a JSON array");
  spec.merges.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const json& m = list[i];
    const std::string key = "model.merges[" + std::to_string(i) + "]";
    std::string a, b;
    if (m.is_string()) {  // "a b": exactly one space, as Hugging Face requires
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        file.fail(key, m.dump() + " is not two tokens \"a b\"");
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      file.fail(key, m.dump() + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    spec.merges.push_back(
        {merge_part(a, key), merge_part(b, key), merge_part(a + b, key + " (merged)")});
  }
}

void Loader::normalizer(const json& n) {
  if (n.is_null()) return;
  const std::string type = file.get_type(n, "normalizer");
  if (type != "NFC") file.unsupported("normalizer.type", type, "null or \"NFC\"");
  spec.nfc = true;
}

void Loader::byte_level(const json& p, const std::string& key) {
  if (file.get_bool(p, "add_prefix_space", key + ".add_prefix_space", true)) {
    file.unsupported(key + ".add_prefix_space", JsonFile::at(p, "add_prefix_space"),
                     "false, which must be given");
  }
  if (file.get_bool(p, "use_regex", key + ".use_regex", true)) {
    spec.split_patterns.push_back({kGpt2SplitPattern, key + " (use_regex: GPT-2's pattern)"});
  }
}

void Loader::split(const json& p, const std::string& key) {
  const json& pattern = JsonFile::at(p, "pattern");
  const json& regex = pattern.is_object() ? JsonFile::at(pattern, "Regex") : pattern;
  if (!pattern.is_object() || !regex.is_string()) {
    file.unsupported(key + ".pattern", pattern, "{\"Regex\": \"...\"}");
  }
  const json& behavior = JsonFile::at(p, "behavior");
  if (behavior != "Isolated") file.unsupported(key + ".behavior", behavior, "\"Isolated\"");
  if (file.get_bool(p, "invert", key + ".invert", false)) {
    file.unsupported(key + ".invert", true, "false");
  }
  spec.split_patterns.push_back({regex.get<std::string>(), key + ".pattern.Regex"});
}

void Loader::pre_tokenizer(const json& p) {
  const std::string supported = "\"ByteLevel\", or \"Sequence\" of \"Split\" and \"ByteLevel\"";
  if (p.is_null()) file.unsupported("pre_tokenizer", p, supported);
  const std::string type = file.get_type(p, "pre_tokenizer");
  if (type == "ByteLevel") return byte_level(p, "pre_tokenizer");
  if (type != "Sequence") file.unsupported("pre_tokenizer.type", type, supported);
  const json& list = JsonFile::at(p, "pretokenizers");
  if (!list.is_array() || list.empty()) {
    file.fail("pre_tokenizer.pretokenizers", "is not a non-empty JSON array");
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string key = "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]";
    const std::string t = file.get_type(list[i], key);
    if (t == "Split" && i + 1 < list.size()) {
      split(list[i], key);
    } else if (t == "ByteLevel" && i + 1 == list.size()) {
      byte_level(list[i], key);
    } else {
      file.unsupported(key + ".type", t, "\"Split\"s, then \"ByteLevel\" last");
    }
  }
}

void Loader::decoder(const json& d) {
  if (d.is_null()) file.unsupported("decoder", d, "\"ByteLevel\"");
  const std::string type = file.get_type(d, "decoder");
  if (type != "ByteLevel") file.unsupported("decoder.type", type, "\"ByteLevel\"");
}

}  // namespace

std::optional<std::string> byte_level_to_bytes(const std::string& token) {
  static const std::unordered_map<uint32_t, char> decoder = [] {
    std::unordered_map<uint32_t, char> d;
    std::vector<uint32_t> cps;
    for (int b = 0; b < 256; ++b) {
      utf8_decode(gpt2_bytes_to_unicode()[size_t(b)], cps);
      d[cps[0]] = char(b);
    }
    return d;
  }();
  std::vector<uint32_t> cps;
  if (!utf8_decode(token, cps)) return std::nullopt;
  std::string out;
  for (uint32_t cp : cps) {
    auto it = decoder.find(cp);
    if (it == decoder.end()) return std::nullopt;
    out += it->second;
  }
  return out;
}

HfTokenizerSpec read_hf_tokenizer(const std::string& dir) {
  HfTokenizerSpec spec;
  spec.dir = dir;
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  const JsonFile file(path, "tokenizer.json");
  const json& root = file.root();
  const json& version = JsonFile::at(root, "version");
  if (!version.is_null() && version != "1.0") file.unsupported("version", version, "\"1.0\"");
  for (const char* name : {"truncation", "padding"}) {
    const json& v = JsonFile::at(root, name);
    if (!v.is_null()) file.unsupported(name, v, "null");
  }
  Loader loader{file, spec, {}};
  loader.model(JsonFile::at(root, "model"));
  loader.normalizer(JsonFile::at(root, "normalizer"));
  loader.pre_tokenizer(JsonFile::at(root, "pre_tokenizer"));
  loader.decoder(JsonFile::at(root, "decoder"));
  read_added_tokens(file, JsonFile::at(root, "added_tokens"), loader.token_ids, spec);
  const fs::path config = fs::path(dir) / "tokenizer_config.json";
  std::error_code ec;
  if (fs::exists(config, ec)) read_tokenizer_config(config.string(), spec);
  return spec;
}

}  // namespace peng
