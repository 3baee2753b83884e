// JsonFile: a JSON configuration file being read, whose errors name the file and the key at
// fault ("tokenizer.json DIR/tokenizer.json: model.type \"WordPiece\" is not supported (...)").
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace peng {

class JsonFile {
 public:
  using json = nlohmann::json;

  // Reads and parses `path`; `what` names the kind of file in messages ("tokenizer.json").
  // Throws InputError when the file cannot be read, is not JSON, or is not a JSON object.
  JsonFile(std::string path, std::string what);
  const json& root() const { return root_; }

  // Throws InputError "WHAT PATH: KEY MSG".
  [[noreturn]] void fail(const std::string& key, const std::string& msg) const;
  // Throws InputError "WHAT PATH: KEY VALUE is not supported (SUPPORTED)".
  [[noreturn]] void unsupported(const std::string& key, const json& value,
                                const std::string& supported) const;

  // obj[name], or null when obj is not an object or has no such member.
  static const json& at(const json& obj, const char* name);
  // The boolean obj[name]; dflt when absent or null; fails on KEY when it is anything else.
  bool get_bool(const json& obj, const char* name, const std::string& key, bool dflt) const;
  // obj["type"] as a string; fails on KEY when obj is not an object or has no string type.
  std::string get_type(const json& obj, const std::string& key) const;

 private:
  std::string path_, what_;
  json root_;
};

}  // namespace peng
