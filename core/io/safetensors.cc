#include "peng/core/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"

namespace peng {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;  // keeps the header's order of tensors

namespace {

struct StDtype {
  const char* name;
  uint64_t size;
  std::optional<DType> dtype;
};

// Every element type of the safetensors format with a whole number of bytes per element.
constexpr StDtype kStDtypes[] = {
    {"F64", 8, DType::kF64},      {"F32", 4, DType::kF32},      {"F16", 2, DType::kF16},
    {"BF16", 2, DType::kBF16},    {"I32", 4, DType::kI32},      {"U16", 2, DType::kU16},
    {"I64", 8, std::nullopt},     {"U64", 8, std::nullopt},     {"U32", 4, std::nullopt},
    {"I16", 2, std::nullopt},     {"I8", 1, std::nullopt},      {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt},    {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
    {"F8_E8M0", 1, std::nullopt},
};

const StDtype* find_st_dtype(const std::string& name) {
  for (const StDtype& d : kStDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

std::string json_type(const Json& j) { return j.type_name(); }

// A non-negative JSON integer, or nullopt (floats, negatives, > INT64_MAX, other types).
std::optional<uint64_t> non_negative_int(const Json& j) {
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (v > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return v;
  }
  if (j.is_number_integer()) {
    int64_t v = j.get<int64_t>();
    if (v < 0) return std::nullopt;
    return uint64_t(v);
  }
  return std::nullopt;
}

// Headers nesting arrays and objects deeper than this are rejected before parsing. A valid
// header nests 3 levels ({"name": {"shape": [...]}}), but nlohmann::ordered_json copies
// values recursively (ordered_map reallocation) and dump() recurses once per level, so a
// few MB of '[' in a header overflowed the stack (SIGSEGV) instead of throwing InputError.
constexpr int kMaxHeaderDepth = 64;

// Whether JSON text nests arrays/objects more than `limit` deep (brackets inside strings
// do not count; stray closing brackets are left to the parser).
bool nests_deeper_than(const std::string& text, int limit) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kI32:
      return "I32";
    case DType::kU16:
      return "U16";
    case DType::kF64:
      return "F64";
  }
  throw Error("safetensors_dtype_name: unknown dtype");
}

std::optional<DType> dtype_from_safetensors(const std::string& name) {
  const StDtype* d = find_st_dtype(name);
  return d ? d->dtype : std::nullopt;
}

void SafetensorsFile::pread_exact(void* dst, uint64_t n, uint64_t offset,
                                  const std::string& what) const {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    size_t chunk = size_t(std::min<uint64_t>(n, uint64_t(1) << 30));
    ssize_t r = ::pread(*fd_, p, chunk, off_t(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw IoError(
          detail::concat(path_.string(), ": reading ", what, " failed: ", std::strerror(errno)));
    }
    if (r == 0) {
      throw IoError(detail::concat(path_.string(), ": file ended at byte ", offset,
                                   " while reading ", what, " (was it truncated after opening?)"));
    }
    p += r;
    n -= uint64_t(r);
    offset += uint64_t(r);
  }
}

SafetensorsFile SafetensorsFile::open(const fs::path& path) {
  SafetensorsFile f;
  f.path_ = path;
  const std::string file = path.string();

  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) throw InputError(file + ": no such file");
    throw IoError(file + ": cannot open: " + std::strerror(err));
  }
  f.fd_ = std::shared_ptr<int>(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw IoError(file + ": fstat failed: " + std::strerror(errno));
  PENG_INPUT_CHECK(S_ISREG(st.st_mode), file, ": not a regular file");
  f.file_size_ = uint64_t(st.st_size);

  // ---- length prefix ----
  PENG_INPUT_CHECK(f.file_size_ >= 8, file, ": file is too small (", f.file_size_,
                   " bytes) to be a safetensors file: it needs an 8-byte header length");
  uint64_t header_len = 0;
  f.pread_exact(&header_len, 8, 0, "the header length");
  PENG_INPUT_CHECK(header_len <= kMaxSafetensorsHeaderBytes, file, ": header length ", header_len,
                   " bytes exceeds the limit of ", kMaxSafetensorsHeaderBytes,
                   " bytes (corrupt file, or not a safetensors file)");
  PENG_INPUT_CHECK(header_len <= f.file_size_ - 8, file, ": header length ", header_len,
                   " bytes runs past the end of the file (", f.file_size_,
                   " bytes; truncated, or not a safetensors file)");
  f.data_offset_ = 8 + header_len;
  const uint64_t data_size = f.file_size_ - f.data_offset_;

  // ---- JSON header ----
  std::string text(header_len, '\0');
  f.pread_exact(text.data(), header_len, 8, "the header");
  PENG_INPUT_CHECK(!nests_deeper_than(text, kMaxHeaderDepth), file,
                   ": header nests JSON arrays/objects more than ", kMaxHeaderDepth,
                   " levels deep (a safetensors header has 3; corrupt file, or not a "
                   "safetensors file)");
  std::unordered_set<std::string> seen;
  std::string duplicate;
  Json::parser_callback_t note_duplicates = [&](int depth, Json::parse_event_t event,
                                                Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  Json header;
  try {
    header = Json::parse(text, note_duplicates);
  } catch (const Json::exception& e) {
    throw InputError(file + ": header is not valid JSON: " + e.what());
  }
  PENG_INPUT_CHECK(header.is_object(), file, ": header is a JSON ", json_type(header),
                   ", expected an object of tensors");
  PENG_INPUT_CHECK(duplicate.empty(), file, ": tensor '", duplicate,
                   "' appears more than once in the header");

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      PENG_INPUT_CHECK(entry.is_object(), file, ": __metadata__ is a JSON ", json_type(entry),
                       ", expected an object of strings");
      for (const auto& [k, v] : entry.items()) {
        PENG_INPUT_CHECK(v.is_string(), file, ": __metadata__ entry '", k, "' is a JSON ",
                         json_type(v), ", expected a string");
        f.metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = file + ": tensor '" + name + "'";
    PENG_INPUT_CHECK(entry.is_object(), where, ": header entry is a JSON ", json_type(entry),
                     ", expected an object with dtype, shape and data_offsets");
    TensorInfo ti;
    ti.name = name;

    // dtype
    auto it = entry.find("dtype");
    PENG_INPUT_CHECK(it != entry.end(), where, ": missing \"dtype\"");
    PENG_INPUT_CHECK(it->is_string(), where, ": \"dtype\" is a JSON ", json_type(*it),
                     ", expected a string");
    ti.dtype_name = it->get<std::string>();
    const StDtype* st_dtype = find_st_dtype(ti.dtype_name);
    PENG_INPUT_CHECK(st_dtype != nullptr, where, ": unknown dtype '", ti.dtype_name, "'");
    ti.dtype = st_dtype->dtype;

    // shape, and its byte size without overflow
    it = entry.find("shape");
    PENG_INPUT_CHECK(it != entry.end(), where, ": missing \"shape\"");
    PENG_INPUT_CHECK(it->is_array(), where, ": \"shape\" is a JSON ", json_type(*it),
                     ", expected an array of non-negative integers");
    uint64_t expected_bytes = st_dtype->size;
    bool overflow = false;
    for (const Json& d : *it) {
      std::optional<uint64_t> v = non_negative_int(d);
      PENG_INPUT_CHECK(v.has_value(), where, ": shape ", it->dump(), " has dimension ", d.dump(),
                       ", expected a non-negative integer");
      ti.shape.push_back(int64_t(*v));
      overflow = overflow || __builtin_mul_overflow(expected_bytes, *v, &expected_bytes);
    }
    PENG_INPUT_CHECK(!overflow, where, ": shape ", it->dump(), " is too large");

    // data_offsets
    it = entry.find("data_offsets");
    PENG_INPUT_CHECK(it != entry.end(), where, ": missing \"data_offsets\"");
    std::optional<uint64_t> begin, end;
    if (it->is_array() && it->size() == 2) {
      begin = non_negative_int((*it)[0]);
      end = non_negative_int((*it)[1]);
    }
    PENG_INPUT_CHECK(begin && end, where, ": data_offsets ", it->dump(),
                     " is not a pair of non-negative integers [begin, end]");
    ti.begin = *begin;
    ti.end = *end;
    PENG_INPUT_CHECK(ti.begin <= ti.end, where, ": data_offsets [", ti.begin, ", ", ti.end,
                     "] have begin > end");
    PENG_INPUT_CHECK(ti.end <= data_size, where, ": data_offsets [", ti.begin, ", ", ti.end,
                     "] run past the end of the data (", data_size,
                     " bytes after the header; is the file truncated?)");
    PENG_INPUT_CHECK(ti.nbytes() == expected_bytes, where, ": data_offsets [", ti.begin, ", ",
                     ti.end, "] hold ", ti.nbytes(), " bytes but shape ", shape_str(ti.shape),
                     " of ", ti.dtype_name, " needs ", expected_bytes, " bytes");

    f.index_[name] = f.tensors_.size();
    f.tensors_.push_back(std::move(ti));
  }

  // ---- no two tensors may share bytes ----
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& ti : f.tensors_) {
    if (ti.nbytes() > 0) by_offset.push_back(&ti);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo* a = by_offset[i - 1];
    const TensorInfo* b = by_offset[i];
    PENG_INPUT_CHECK(b->begin >= a->end, file, ": tensors '", a->name, "' [", a->begin, ", ",
                     a->end, ") and '", b->name, "' [", b->begin, ", ", b->end,
                     ") overlap in the data");
  }
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const TensorInfo& ti : tensors_) out.push_back(ti.name);
  return out;
}

const SafetensorsFile::TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  PENG_INPUT_CHECK(it != index_.end(), path_.string(), ": no tensor '", name, "'");
  return tensors_[it->second];
}

Tensor SafetensorsFile::read(const std::string& name) const {
  const TensorInfo& ti = info(name);
  PENG_INPUT_CHECK(ti.dtype.has_value(), path_.string(), ": tensor '", name, "' has dtype ",
                   ti.dtype_name,
                   ", which peng cannot load (supported: F32, BF16, F16, I32, U16, F64)");
  Tensor t = Tensor::empty(ti.shape, *ti.dtype);
  pread_exact(t.raw_data(), ti.nbytes(), data_offset_ + ti.begin, "tensor '" + name + "'");
  return t;
}

std::string SafetensorsFile::read_bytes(const std::string& name) const {
  const TensorInfo& ti = info(name);
  std::string out(ti.nbytes(), '\0');
  pread_exact(out.data(), ti.nbytes(), data_offset_ + ti.begin, "tensor '" + name + "'");
  return out;
}

void write_safetensors(const fs::path& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  Json header = Json::object();
  std::unordered_set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    PENG_INPUT_CHECK(!name.empty(), file, ": a tensor has an empty name");
    PENG_INPUT_CHECK(name != "__metadata__", file, ": '__metadata__' is not a valid tensor name");
    PENG_INPUT_CHECK(seen.insert(name).second, file, ": tensor '", name, "' is given twice");
    PENG_INPUT_CHECK(t.defined(), file, ": tensor '", name, "' is undefined");
    Json entry = Json::object();
    entry["dtype"] = safetensors_dtype_name(t.dtype());
    entry["shape"] = t.shape();
    entry["data_offsets"] = {offset, offset + t.nbytes()};
    header[name] = std::move(entry);
    offset += t.nbytes();
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception& e) {  // e.g. a name that is not valid UTF-8
    throw InputError(file + ": cannot encode the header: " + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  PENG_INPUT_CHECK(text.size() <= kMaxSafetensorsHeaderBytes, file, ": header of ", text.size(),
                   " bytes exceeds the limit of ", kMaxSafetensorsHeaderBytes, " bytes");

  AtomicFileWriter w(path);
  uint64_t header_len = text.size();
  w.write(&header_len, 8);
  w.write(text);
  for (const auto& [name, t] : tensors) {
    if (t.device().is_cpu()) {
      w.write(t.raw_data(), t.nbytes());
    } else {
      Tensor host = t.to(Device::cpu());
      w.write(host.raw_data(), host.nbytes());
    }
  }
  w.commit();
}

}  // namespace peng
