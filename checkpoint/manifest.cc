#include "peng/checkpoint/manifest.h"

#include <xxhash.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "peng/core/error.h"

namespace peng::ckpt {

namespace {

constexpr char kMagic[8] = {'P', 'E', 'N', 'G', 'C', 'K', 'P', 'T'};
constexpr size_t kHeader = 24;
constexpr int kMaxRank = 8;
constexpr int64_t kMaxNumel = int64_t(1) << 48;

void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}
uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

bool plain_file_name(const std::string& n) {
  if (n.empty() || n == "." || n == ".." || n.size() > 255) return false;
  for (char c : n) {
    if (!(std::isalnum(uint8_t(c)) || c == '.' || c == '_' || c == '-')) return false;
  }
  return true;
}

void validate(const proto::Manifest& m, const std::string& where) {
  const auto check = [&](bool ok, auto&&... what) {
    if (!ok) throw InputError(detail::concat("checkpoint manifest ", where, ": ", what...));
  };
  check(m.format_version() == kFormatVersion, "format version ", m.format_version(),
        " (this peng reads version ", kFormatVersion, ")");
  check(m.step() >= 0, "negative step ", m.step());
  check(m.chunk_bytes() >= 4 && m.chunk_bytes() % 4 == 0 && m.chunk_bytes() <= (1u << 30),
        "chunk_bytes ", m.chunk_bytes(), " is not a multiple of 4 in [4, 2^30]");
  std::map<std::string, uint64_t> files;
  for (const proto::DataFile& f : m.files()) {
    check(plain_file_name(f.name()), "data file name '", f.name(), "' is not a plain file name");
    check(files.emplace(f.name(), f.bytes()).second, "data file ", f.name(), " listed twice");
  }
  std::set<std::string> names;
  for (const proto::TensorInfo& t : m.tensors()) {
    const std::string& n = t.name();
    check(!n.empty() && n.size() < 1024, "a tensor without a name");
    check(names.insert(n).second, "tensor ", n, " listed twice");
    check(t.dtype() == "f32", "tensor ", n, " has dtype '", t.dtype(), "' (expected f32)");
    check(t.shape_size() <= kMaxRank, "tensor ", n, " has ", t.shape_size(), " dimensions");
    int64_t numel = 1;
    for (int64_t d : t.shape()) {
      check(d >= 0 && d <= kMaxNumel && (d == 0 || numel <= kMaxNumel / d), "tensor ", n,
            " has a bad shape");
      numel *= d;
    }
    int64_t covered = 0;
    for (const proto::Shard& s : t.shards()) {
      check(files.count(s.file()), "tensor ", n, ": shard in unlisted file '", s.file(), "'");
      check(s.offset_size() == t.shape_size() && s.length_size() == t.shape_size(), "tensor ", n,
            ": shard in ", s.file(), " has ", s.offset_size(), " offsets and ", s.length_size(),
            " lengths for ", t.shape_size(), " dimensions");
      int64_t volume = 1;
      for (int d = 0; d < t.shape_size(); ++d) {
        const int64_t o = s.offset(d), l = s.length(d);
        check(o >= 0 && l >= 1 && o <= t.shape(d) && l <= t.shape(d) - o, "tensor ", n,
              ": shard in ", s.file(), " reaches outside the shape at dimension ", d);
        volume *= l;
      }
      check(s.byte_length() == uint64_t(volume) * 4, "tensor ", n, ": shard in ", s.file(),
            " holds ", volume, " elements in ", s.byte_length(), " bytes");
      const uint64_t size = files.at(s.file());
      check(s.byte_offset() <= size && s.byte_length() <= size - s.byte_offset(), "tensor ", n,
            ": shard bytes [", s.byte_offset(), ", +", s.byte_length(), ") outside ", s.file(),
            " (", size, " bytes)");
      const uint64_t chunks = (s.byte_length() + m.chunk_bytes() - 1) / m.chunk_bytes();
      check(uint64_t(s.chunk_xxh3_size()) == chunks, "tensor ", n, ": shard in ", s.file(), " has ",
            s.chunk_xxh3_size(), " checksums for ", chunks, " chunks");
      covered += volume;
      check(covered <= numel, "tensor ", n, ": shards hold more elements than the tensor");
    }
    check(covered == numel, "tensor ", n, ": shards hold ", covered, " of its ", numel,
          " elements");
  }
}

}  // namespace

uint64_t checksum(const void* data, size_t n) { return XXH3_64bits(data, n); }

Box shard_box(const proto::Shard& s) {
  return {{s.offset().begin(), s.offset().end()}, {s.length().begin(), s.length().end()}};
}

std::string encode_manifest(const proto::Manifest& m) {
  std::string payload;
  PENG_CHECK(m.SerializeToString(&payload), "serializing the checkpoint manifest failed");
  std::string out(kMagic, sizeof(kMagic));
  put_u64(out, payload.size());
  put_u64(out, checksum(payload.data(), payload.size()));
  return out + payload;
}

proto::Manifest decode_manifest(std::string_view bytes, const std::string& where) {
  const auto bad = [&](auto&&... what) {
    return InputError(detail::concat("checkpoint manifest ", where, ": ", what...));
  };
  if (bytes.size() < kHeader || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0)
    throw bad("not a peng checkpoint manifest (bad magic or shorter than its header)");
  const uint64_t length = get_u64(bytes.data() + 8);
  if (length != bytes.size() - kHeader)
    throw bad("truncated or padded: header says ", length, " payload bytes, file has ",
              bytes.size() - kHeader);
  const std::string_view payload = bytes.substr(kHeader);
  // ParseFromArray takes an int size; past 2 GiB protobuf aborts (FatalException).
  if (payload.size() > size_t(std::numeric_limits<int>::max()))
    throw bad("payload of ", payload.size(), " bytes is over protobuf's 2 GiB message limit");
  if (checksum(payload.data(), payload.size()) != get_u64(bytes.data() + 16))
    throw bad("checksum mismatch (the file is corrupt)");
  proto::Manifest m;
  if (!m.ParseFromArray(payload.data(), int(payload.size())))
    throw bad("payload is not a valid manifest message");
  validate(m, where);
  return m;
}

proto::Manifest read_manifest(const std::filesystem::path& dir) {
  const std::filesystem::path p = dir / kManifestFile;
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    throw InputError(detail::concat("checkpoint ", dir.string(), ": no ", kManifestFile,
                                    std::filesystem::is_directory(dir)
                                        ? " (not a committed checkpoint)"
                                        : " (no such folder)"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return decode_manifest(ss.str(), p.string());
}

}  // namespace peng::ckpt
