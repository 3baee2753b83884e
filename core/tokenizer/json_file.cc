#include "peng/core/tokenizer/json_file.h"

#include <fstream>
#include <sstream>

#include "peng/core/error.h"

namespace peng {

JsonFile::JsonFile(std::string path, std::string what)
    : path_(std::move(path)), what_(std::move(what)) {
  std::ifstream f(path_, std::ios::binary);
  PENG_INPUT_CHECK(f.good(), "cannot open ", what_, " ", path_);
  std::ostringstream os;
  os << f.rdbuf();
  PENG_INPUT_CHECK(!f.bad(), "cannot read ", what_, " ", path_);
  try {
    root_ = json::parse(os.str());
  } catch (const json::exception& e) {
    fail("", std::string("is not valid JSON: ") + e.what());
  }
  if (!root_.is_object()) fail("", "is not a JSON object");
}

void JsonFile::fail(const std::string& key, const std::string& msg) const {
  throw InputError(detail::concat(what_, " ", path_, ": ", key, key.empty() ? "" : " ", msg));
}

void JsonFile::unsupported(const std::string& key, const json& value,
                           const std::string& supported) const {
  fail(key, value.dump() + " is not supported (" + supported + ")");
}

const JsonFile::json& JsonFile::at(const json& obj, const char* name) {
  static const json null;
  if (!obj.is_object()) return null;
  auto it = obj.find(name);
  return it == obj.end() ? null : *it;
}

bool JsonFile::get_bool(const json& obj, const char* name, const std::string& key,
                        bool dflt) const {
  const json& v = at(obj, name);
  if (v.is_null()) return dflt;
  if (!v.is_boolean()) fail(key, v.dump() + " is not true or false");
  return v.get<bool>();
}

std::string JsonFile::get_type(const json& obj, const std::string& key) const {
  if (!obj.is_object()) fail(key, obj.dump().substr(0, 80) + " is not a JSON object");
  const json& t = at(obj, "type");
  if (!t.is_string()) fail(key + ".type", t.dump() + " is not a string");
  return t.get<std::string>();
}

}  // namespace peng
