#include "peng/models/hf/hf_config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"

namespace peng {

namespace fs = std::filesystem;

Json read_hf_config_json(const fs::path& dir) {
  const fs::path path = dir / "config.json";
  const std::string file = path.string();
  std::error_code ec;
  PENG_INPUT_CHECK(fs::is_directory(dir, ec), dir.string(),
                   ": no such folder (expected a Hugging Face model folder with config.json and "
                   "model.safetensors)");
  PENG_INPUT_CHECK(fs::exists(path, ec), file, ": no such file");
  PENG_INPUT_CHECK(fs::is_regular_file(path, ec), file, ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(file + ": cannot open for reading");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError(file + ": read failed");
  Json j;
  try {
    j = Json::parse(text.str());
  } catch (const Json::exception& e) {
    throw InputError(file + ": not valid JSON: " + e.what());
  }
  PENG_INPUT_CHECK(j.is_object(), file, ": expected a JSON object, got a JSON ", j.type_name());
  return j;
}

double shortest_decimal(float f) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf - 1, f);
  *res.ptr = '\0';
  return std::strtod(buf, nullptr);
}

const char* torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return "bfloat16";
    case DType::kF16:
      return "float16";
    default:
      return "float32";
  }
}

void write_hf_config_json(const fs::path& dir, const Json& j) {
  write_file_atomic(dir / "config.json", j.dump(1));
}

const Json* JsonFields::find(const char* key) const {
  auto it = j_.find(key);
  return it == j_.end() ? nullptr : &*it;
}

void JsonFields::fail(const char* key, const std::string& message) const {
  throw InputError(detail::concat(file_, ": field \"", key, "\" ", message));
}

std::optional<int64_t> JsonFields::integer(const char* key, bool required, int64_t lo,
                                           int64_t hi) const {
  const Json* v = find(key);
  if (!v || v->is_null()) {
    if (required) throw InputError(detail::concat(file_, ": missing field \"", key, "\""));
    return std::nullopt;
  }
  if (!v->is_number_integer()) fail(key, "must be an integer, got " + v->dump());
  const bool in_range = v->is_number_unsigned()
                            ? v->get<uint64_t>() >= uint64_t(std::max<int64_t>(lo, 0)) &&
                                  v->get<uint64_t>() <= uint64_t(hi)
                            : (v->get<int64_t>() >= lo && v->get<int64_t>() <= hi);
  if (!in_range) fail(key, detail::concat("must be in [", lo, ", ", hi, "], got ", v->dump()));
  return v->get<int64_t>();
}

std::optional<double> JsonFields::number(const char* key, double lo, double hi) const {
  const Json* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_number()) fail(key, "must be a number, got " + v->dump());
  const double d = v->get<double>();
  if (!(std::isfinite(d) && d >= lo && d <= hi)) {
    fail(key, detail::concat("must be in [", lo, ", ", hi, "], got ", v->dump()));
  }
  return d;
}

std::optional<bool> JsonFields::boolean(const char* key) const {
  const Json* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_boolean()) fail(key, "must be true or false, got " + v->dump());
  return v->get<bool>();
}

std::optional<std::string> JsonFields::string(const char* key) const {
  const Json* v = find(key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_string()) fail(key, "must be a string, got " + v->dump());
  return v->get<std::string>();
}

void JsonFields::expect(const char* key, const Json& expected, const std::string& why) const {
  const Json* v = find(key);
  if (v && !v->is_null() && *v != expected) fail(key, "is " + v->dump() + "; " + why);
}

}  // namespace peng
