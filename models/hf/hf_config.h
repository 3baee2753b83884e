// Hugging Face config.json files: reading one with field checks that name the key, and
// writing one atomically. Family-independent: each model family (models/<family>/) reads
// its own keys through JsonFields and decides what they mean.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "peng/core/dtype.h"

namespace peng {

using Json = nlohmann::ordered_json;

// DIR/config.json parsed; InputError naming the folder or file when it is missing, not
// JSON, or not an object.
Json read_hf_config_json(const std::filesystem::path& dir);
// The shortest decimal that reads back as `f`, as a double: what a config.json written by
// Python holds for a float32 hyper-parameter (1e-5f -> 1e-05, not 9.99999974e-06).
double shortest_decimal(float f);
// The config.json "torch_dtype" of a weight dtype: "float32", "bfloat16", "float16".
const char* torch_dtype_name(DType dtype);

// Writes DIR/config.json (j.dump(1), atomically).
void write_hf_config_json(const std::filesystem::path& dir, const Json& j);

// Typed access to the keys of one config object; every mistake is an InputError
// "<file>: field "<key>" ...".
class JsonFields {
 public:
  JsonFields(const Json& j, std::string file) : j_(j), file_(std::move(file)) {}

  const Json* find(const char* key) const;
  // An integer in [lo, hi]; nullopt when absent (an error when `required`).
  std::optional<int64_t> integer(const char* key, bool required, int64_t lo, int64_t hi) const;
  // A finite number in [lo, hi]; nullopt when absent or null.
  std::optional<double> number(const char* key, double lo, double hi) const;
  std::optional<bool> boolean(const char* key) const;
  std::optional<std::string> string(const char* key) const;
  // The key is absent, null, or equal to `expected` (a JSON value); otherwise an error
  // saying `why`.
  void expect(const char* key, const Json& expected, const std::string& why) const;
  // An InputError "<file>: field "<key>" <message>".
  [[noreturn]] void fail(const char* key, const std::string& message) const;
  const std::string& file() const { return file_; }
  const Json& json() const { return j_; }  // the whole object

 private:
  const Json& j_;
  std::string file_;
};

}  // namespace peng
