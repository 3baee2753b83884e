#include "peng/models/hf/hf_weights.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"
#include "peng/core/io/safetensors.h"

namespace peng {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

// Where each stored tensor is: its file (for messages) and the open file.
struct Stored {
  const SafetensorsFile* file;
  std::string name;  // as stored
};

// "'a', 'b' and 3 more"
std::string quoted_list(const std::vector<std::string>& names) {
  std::ostringstream os;
  for (size_t i = 0; i < names.size() && i < 8; ++i)
    os << (i ? ", " : "") << "'" << names[i] << "'";
  if (names.size() > 8) os << " and " << names.size() - 8 << " more";
  return os.str();
}

// The weight files of DIR: model.safetensors, or every shard the index names (with the
// index's path for messages about the set as a whole).
std::vector<SafetensorsFile> open_files(const fs::path& dir, std::string& where,
                                        std::map<std::string, size_t>& listed) {
  std::error_code ec;
  const fs::path single = dir / kSingleFile, index = dir / kIndexFile;
  if (fs::exists(single, ec) || !fs::exists(index, ec)) {
    where = single.string();
    PENG_INPUT_CHECK(fs::exists(single, ec) || !fs::exists(dir / "pytorch_model.bin", ec), where,
                     ": no such file (found pytorch_model.bin: convert it to safetensors; peng "
                     "does not read pickles)");
    std::vector<SafetensorsFile> files;
    files.push_back(SafetensorsFile::open(single));
    return files;
  }
  where = index.string();
  std::ifstream in(index, std::ios::binary);
  if (!in) throw IoError(where + ": cannot open for reading");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where + ": not valid JSON: " + e.what());
  }
  PENG_INPUT_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), where,
                   ": expected an object with a \"weight_map\" object");
  std::vector<SafetensorsFile> files;
  std::map<std::string, size_t> file_index;
  for (const auto& [tensor, file] : j["weight_map"].items()) {
    PENG_INPUT_CHECK(file.is_string(), where, ": weight_map[\"", tensor, "\"] is not a file name");
    const std::string name = file.get<std::string>();
    PENG_INPUT_CHECK(
        !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..", where,
        ": weight_map[\"", tensor, "\"] = \"", name, "\" is not a file of this folder");
    auto [it, added] = file_index.emplace(name, files.size());
    if (added) files.push_back(SafetensorsFile::open(dir / name));
    PENG_INPUT_CHECK(files[it->second].contains(tensor), (dir / name).string(), ": tensor '",
                     tensor, "' listed in ", kIndexFile, " is not in this file");
    listed[tensor] = it->second;
  }
  return files;
}

int64_t first_non_finite(const Tensor& t) {
  const float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (!std::isfinite(p[i])) return i;
  }
  return -1;
}

// Maps every stored tensor to the parameter part it is, checking names, shapes and dtypes.
std::map<std::string, Stored> match_tensors(const std::vector<SafetensorsFile>& files,
                                            const std::map<std::string, size_t>& listed,
                                            const HfWeights& w, const std::string& where) {
  std::map<std::string, Shape> parts;  // HF name -> shape
  for (const HfTensor& t : w.tensors) {
    for (const auto& [name, shape] : t.parts) parts[name] = shape;
  }
  std::map<std::string, Stored> found;
  std::vector<std::string> unknown;
  for (size_t f = 0; f < files.size(); ++f) {
    const SafetensorsFile& file = files[f];
    const std::string fname = file.path().string();
    for (const std::string& stored : file.names()) {
      if (!listed.empty()) {
        const auto it = listed.find(stored);
        PENG_INPUT_CHECK(it != listed.end(), fname, ": tensor '", stored, "' is not listed in ",
                         kIndexFile);
        if (it->second != f) continue;  // the index says it is in another file
      }
      const SafetensorsFile::TensorInfo& ti = file.info(stored);
      const bool prefixed = !w.read_prefix.empty() && stored.rfind(w.read_prefix, 0) == 0;
      const std::string name = prefixed ? stored.substr(w.read_prefix.size()) : stored;
      if (auto it = w.ignored.find(name); it != w.ignored.end()) {
        PENG_INPUT_CHECK(!it->second || ti.shape == *it->second, fname, ": tensor '", stored,
                         "' has shape ", shape_str(ti.shape), ", expected ",
                         shape_str(it->second.value_or(Shape{})), " (", w.model, ")");
        continue;
      }
      auto part = parts.find(name);
      if (part == parts.end()) {
        unknown.push_back(stored);
        continue;
      }
      auto [it, inserted] = found.emplace(name, Stored{&file, stored});
      PENG_INPUT_CHECK(inserted, fname, ": parameter '", name, "' is stored twice, as '",
                       it->second.name, "' and as '", stored, "'");
      PENG_INPUT_CHECK(ti.shape == part->second, fname, ": tensor '", stored, "' has shape ",
                       shape_str(ti.shape), ", expected ", shape_str(part->second), " (", w.model,
                       ")");
      PENG_INPUT_CHECK(ti.dtype_name == "F32" || ti.dtype_name == "BF16" || ti.dtype_name == "F16",
                       fname, ": tensor '", stored, "' has dtype ", ti.dtype_name,
                       "; weights must be F32, BF16 or F16");
    }
  }
  PENG_INPUT_CHECK(unknown.empty(), where, ": ", unknown.size() == 1 ? "tensor " : "tensors ",
                   quoted_list(unknown), " not part of ", w.model, " (wrong file or config?)");
  std::vector<std::string> missing;
  for (const auto& [name, shape] : parts) {
    if (!found.count(name)) missing.push_back(name);
  }
  PENG_INPUT_CHECK(missing.empty(), where, ": missing ",
                   missing.size() == 1 ? "parameter " : "parameters ", quoted_list(missing), " (",
                   w.model, ")");
  return found;
}

}  // namespace

uint64_t parse_shard_size(const std::string& text, const std::string& what) {
  static const std::vector<std::pair<std::string, uint64_t>> units = {{"GIB", 1ull << 30},
                                                                      {"MIB", 1ull << 20},
                                                                      {"KIB", 1ull << 10},
                                                                      {"GB", 1'000'000'000},
                                                                      {"MB", 1'000'000},
                                                                      {"KB", 1'000},
                                                                      {"B", 1},
                                                                      {"", 1}};
  std::string upper;
  for (char ch : text) upper += char(std::toupper(static_cast<unsigned char>(ch)));
  for (const auto& [unit, scale] : units) {
    if (!upper.ends_with(unit)) continue;
    const std::string digits = upper.substr(0, upper.size() - unit.size());
    char* end = nullptr;
    const double v = digits.empty() ? 0 : std::strtod(digits.c_str(), &end);
    if (!digits.empty() && end == digits.c_str() + digits.size() && v >= 1 && v * scale < 1e19) {
      return uint64_t(v * double(scale));
    }
    break;
  }
  throw InputError(what + ": \"" + text + "\" is not a size (e.g. 5GB, 500MB, 2GiB)");
}

std::map<std::string, Tensor> read_hf_weights(const fs::path& dir, const HfWeights& w) {
  std::string where;
  std::map<std::string, size_t> listed;
  const std::vector<SafetensorsFile> files = open_files(dir, where, listed);
  const std::map<std::string, Stored> found = match_tensors(files, listed, w, where);
  std::map<std::string, Tensor> out;
  for (const HfTensor& t : w.tensors) {
    std::vector<Tensor> pieces;
    int64_t rows = 0;
    for (const auto& [name, shape] : t.parts) {
      const Stored& s = found.at(name);
      Tensor v = s.file->read(s.name).to_dtype(DType::kF32);
      const int64_t bad = first_non_finite(v);
      PENG_INPUT_CHECK(bad < 0, s.file->path().string(), ": tensor '", s.name,
                       "' holds a non-finite value (", v.data<float>()[bad], ") at flat index ",
                       bad);
      rows += shape.empty() ? 1 : shape[0];
      pieces.push_back(std::move(v));
    }
    if (pieces.size() == 1) {
      out.emplace(t.param, std::move(pieces[0]));
      continue;
    }
    Shape whole = t.parts[0].second;
    whole[0] = rows;
    Tensor joined = Tensor::empty(whole);
    int64_t at = 0;
    for (const Tensor& p : pieces) {
      joined.slice(at, at + p.dim(0)).copy_from(p);
      at += p.dim(0);
    }
    out.emplace(t.param, std::move(joined));
  }
  return out;
}

namespace {

// The Hugging Face tensors of `params` in mapping order, converted to `dtype`.
std::vector<std::pair<std::string, Tensor>> hf_tensors(const fs::path& dir, const HfWeights& w,
                                                       const std::map<std::string, Tensor>& params,
                                                       DType dtype) {
  const std::string where = dir.string();
  PENG_INPUT_CHECK(dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16, where,
                   ": Hugging Face export supports f32, bf16 and f16, not ", dtype_name(dtype));
  std::set<std::string> expected;
  for (const HfTensor& t : w.tensors) expected.insert(t.param);
  for (const auto& [name, t] : params) {
    PENG_INPUT_CHECK(expected.count(name), where, ": cannot export '", name,
                     "': not a parameter of ", w.model);
  }
  std::vector<std::pair<std::string, Tensor>> out;
  for (const HfTensor& t : w.tensors) {
    auto it = params.find(t.param);
    PENG_INPUT_CHECK(it != params.end() && it->second.defined(), where,
                     ": cannot export: parameter '", t.param, "' is missing");
    Tensor v = it->second.to(Device::cpu());
    int64_t rows = 0;
    for (const auto& [name, shape] : t.parts) rows += shape.empty() ? 1 : shape[0];
    Shape whole = t.parts[0].second;
    if (!whole.empty()) whole[0] = rows;
    PENG_INPUT_CHECK(v.shape() == whole, where, ": cannot export parameter '", t.param,
                     "' of shape ", shape_str(v.shape()), ", expected ", shape_str(whole));
    PENG_INPUT_CHECK(v.dtype() == DType::kF32 || v.dtype() == DType::kBF16 ||
                         v.dtype() == DType::kF16 || v.dtype() == DType::kF64,
                     where, ": cannot export parameter '", t.param, "' of dtype ",
                     dtype_name(v.dtype()));
    if (v.dtype() != dtype) v = v.to_dtype(dtype);
    int64_t at = 0;
    for (const auto& [name, shape] : t.parts) {
      const int64_t n = shape.empty() ? 1 : shape[0];
      Tensor part = t.parts.size() == 1 ? v : v.slice(at, at + n).clone();
      const int64_t bad = first_non_finite(part.to_dtype(DType::kF32));
      PENG_INPUT_CHECK(bad < 0, where, ": cannot export parameter '", t.param,
                       "': non-finite value in ", dtype_name(dtype), " at flat index ", bad);
      out.emplace_back(name, std::move(part));
      at += n;
    }
  }
  return out;
}

void remove_if_exists(const fs::path& p) {
  std::error_code ec;
  fs::remove(p, ec);
  if (ec) throw IoError(p.string() + ": cannot remove: " + ec.message());
}

// Removes weight files an earlier export into the same folder left and this one did not
// write (`written`): the single file, the index, shards of another count.
void remove_stale_weights(const fs::path& dir, const std::set<std::string>& written) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    const bool shard = n.rfind("model-", 0) == 0 && n.find("-of-") != std::string::npos &&
                       n.ends_with(".safetensors");
    if ((shard || n == kSingleFile || n == kIndexFile) && !written.count(n)) {
      remove_if_exists(e.path());
    }
  }
}

}  // namespace

void write_hf_weights(const fs::path& dir, const HfWeights& w,
                      const std::map<std::string, Tensor>& params, DType dtype,
                      uint64_t max_shard_bytes) {
  std::vector<std::pair<std::string, Tensor>> tensors = hf_tensors(dir, w, params, dtype);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir, ec)) {
    throw IoError(dir.string() + ": cannot create folder: " + (ec ? ec.message() : "not a folder"));
  }
  // Greedy shards of at most max_shard_bytes (a larger tensor alone), like HF.
  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (auto& t : tensors) {
    const uint64_t bytes = t.second.nbytes();
    if (!shards.back().empty() && in_shard + bytes > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    in_shard += bytes;
    total += bytes;
    shards.back().push_back(std::move(t));
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  if (shards.size() == 1) {
    write_safetensors(dir / kSingleFile, shards[0], metadata);
    remove_stale_weights(dir, {kSingleFile});
    return;
  }
  nlohmann::json map = nlohmann::json::object();
  std::set<std::string> written = {kIndexFile};
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    write_safetensors(dir / name, shards[i], metadata);
    for (const auto& t : shards[i]) map[t.first] = name;
    written.insert(name);
  }
  // An old single file goes before the index appears: readers prefer it (as HF does), so a
  // crash in between must not leave it beside the new shards' index.
  remove_if_exists(dir / kSingleFile);
  const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", map}};
  write_file_atomic(dir / kIndexFile, index.dump(2) + "\n");  // nlohmann::json sorts keys
  remove_stale_weights(dir, written);
}

}  // namespace peng
