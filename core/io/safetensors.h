// Reading and writing the safetensors format (https://github.com/huggingface/safetensors).
//
// Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data
// buffer. The JSON object maps each tensor name to
//   {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
// with [begin, end) in bytes relative to the start of the data buffer, plus an optional
// "__metadata__" object of string -> string. Data is little-endian, row-major, unaligned.
//
// SafetensorsFile::open validates the whole header before anything is read and throws
// peng::InputError naming the file (and the tensor, when one is at fault) for the FIRST
// problem: a file too small for the length prefix, a header length past the end of the file
// or above kMaxSafetensorsHeaderBytes, a header that is not a JSON object, duplicate names,
// an entry that is not an object, an unknown dtype, a shape that is not an array of
// non-negative integers, data_offsets that are not [begin <= end <= data size], a byte
// length that differs from numel * dtype size (computed without overflow), and tensors
// whose byte ranges overlap. Operating-system failures (open, read) throw peng::IoError.
// Nothing in the file is ever executed; reads use pread on a descriptor kept open.
//
// Writing (write_safetensors) produces what the Python reference writer produces: tensors
// in the given order, compact JSON with keys dtype, shape, data_offsets, "__metadata__"
// last (when non-empty), the header padded with spaces to a multiple of 8 bytes, and the
// data packed back to back. The file is written to `path + ".tmp"` and renamed (atomic).
#pragma once

#include <bit>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "peng/core/tensor.h"

namespace peng {

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

// Largest header accepted by the reader (the Rust reference uses the same bound).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// The safetensors dtype string for a peng dtype: "F32", "BF16", "F16", "I32", "U16", "F64".
const char* safetensors_dtype_name(DType t);
// The peng dtype of a safetensors dtype string; nullopt when peng has no such element type
// (e.g. "I64", "U8", "BOOL") or the string is unknown.
std::optional<DType> dtype_from_safetensors(const std::string& name);

class SafetensorsFile {
 public:
  struct TensorInfo {
    std::string name;
    std::string dtype_name;      // as stored: "F32", "BF16", "I64", ...
    std::optional<DType> dtype;  // nullopt when peng has no such type (read() then throws)
    Shape shape;
    uint64_t begin = 0;  // data_offsets, relative to the data buffer
    uint64_t end = 0;
    uint64_t nbytes() const { return end - begin; }
  };

  // Opens and validates `path` (see the file comment). Throws InputError for a missing or
  // malformed file, IoError when the operating system fails.
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  // Tensor names in the order of the JSON header ("__metadata__" excluded).
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Throws InputError naming the file when there is no such tensor.
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t data_offset() const { return data_offset_; }  // 8 + header length
  uint64_t file_size() const { return file_size_; }

  // Reads may run concurrently from several threads (pread on a shared descriptor); the
  // file must not change while it is open.
  // A new CPU tensor in the stored dtype. Throws InputError for an unknown name or a dtype
  // peng does not have (naming the tensor), IoError when the read fails or comes up short.
  Tensor read(const std::string& name) const;
  // The stored bytes of one tensor, verbatim.
  std::string read_bytes(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  void pread_exact(void* dst, uint64_t n, uint64_t offset, const std::string& what) const;

  std::filesystem::path path_;
  std::shared_ptr<int> fd_;  // closed when the last copy goes away
  uint64_t file_size_ = 0;
  uint64_t data_offset_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (any device; names unique, non-empty, not "__metadata__") with
// `metadata` to `path` atomically. Throws InputError for bad names, IoError on write errors.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace peng
