#include "peng/core/data/token_shard.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "peng/core/error.h"

namespace peng {

static_assert(std::endian::native == std::endian::little,
              "token shards are little-endian; a big-endian host needs byte swaps");

namespace {

std::string errno_str(int err) { return std::strerror(err); }

// Closes a file descriptor on scope exit.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// TokenShard

TokenShard::TokenShard(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw InputError(detail::concat("cannot open token shard ", path, ": ", errno_str(err)));
  }
  FdGuard guard{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    throw IoError(detail::concat("cannot stat token shard ", path, ": ", errno_str(err)));
  }
  PENG_INPUT_CHECK(S_ISREG(st.st_mode), "token shard ", path, " is not a regular file");
  const int64_t file_bytes = int64_t(st.st_size);
  PENG_INPUT_CHECK(file_bytes >= kShardHeaderBytes, "token shard ", path,
                   " is too short: ", file_bytes, " bytes, less than its ", kShardHeaderBytes,
                   "-byte header");

  int32_t header[kShardHeaderInts];
  {
    size_t got = 0;
    auto* dst = reinterpret_cast<char*>(header);
    while (got < sizeof header) {
      ssize_t n = ::pread(fd, dst + got, sizeof header - got, off_t(got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n < 0 ? errno : EIO;
        throw IoError(
            detail::concat("cannot read the header of token shard ", path, ": ", errno_str(err)));
      }
      got += size_t(n);
    }
  }
  const int32_t magic = header[0], version = header[1], count = header[2];
  if (magic == kShardMagicU16) {
    PENG_INPUT_CHECK(version == kShardVersionU16, "token shard ", path, ": version ", version,
                     " with magic ", magic, " (expected version ", kShardVersionU16, ")");
    token_bytes_ = 2;
  } else if (magic == kShardMagicU32) {
    PENG_INPUT_CHECK(version == kShardVersionU32, "token shard ", path, ": version ", version,
                     " with magic ", magic, " (expected version ", kShardVersionU32, ")");
    token_bytes_ = 4;
  } else {
    throw InputError(detail::concat("token shard ", path, ": bad magic ", magic, " (expected ",
                                    kShardMagicU16, " or ", kShardMagicU32, ")"));
  }
  PENG_INPUT_CHECK(count >= 0, "token shard ", path, ": negative token count ", count);
  size_ = count;
  const int64_t expected = kShardHeaderBytes + size_ * token_bytes_;
  if (file_bytes != expected) {
    throw InputError(detail::concat(
        "token shard ", path, (file_bytes < expected ? " is truncated" : " has trailing bytes"),
        ": header says ", size_, " tokens of ", token_bytes_, " bytes, so expected ", expected,
        " bytes, but the file has ", file_bytes, " bytes"));
  }

  map_bytes_ = size_t(file_bytes);
  void* p = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    map_bytes_ = 0;
    throw IoError(detail::concat("cannot mmap token shard ", path, ": ", errno_str(err)));
  }
  map_ = p;
  tokens_ = static_cast<const unsigned char*>(p) + kShardHeaderBytes;
}

TokenShard::~TokenShard() { unmap(); }

void TokenShard::unmap() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
}

TokenShard::TokenShard(TokenShard&& o) noexcept
    : path_(std::move(o.path_)),
      map_(std::exchange(o.map_, nullptr)),
      map_bytes_(std::exchange(o.map_bytes_, 0)),
      tokens_(std::exchange(o.tokens_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      token_bytes_(o.token_bytes_) {}

TokenShard& TokenShard::operator=(TokenShard&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
    tokens_ = std::exchange(o.tokens_, nullptr);
    size_ = std::exchange(o.size_, 0);
    token_bytes_ = o.token_bytes_;
  }
  return *this;
}

void TokenShard::read(int64_t begin, int64_t count, int32_t* out, int64_t vocab) const {
  PENG_CHECK(begin >= 0 && count >= 0 && begin + count <= size_, "token shard ", path_,
             ": read of [", begin, ", ", begin + count, ") outside its ", size_, " tokens");
  auto bad = [&](int64_t i, uint64_t id) {
    throw InputError(detail::concat("token shard ", path_, ": token at position ", i, " has id ",
                                    id, ", which is >= the vocab size ", vocab));
  };
  if (token_bytes_ == 2) {
    const uint16_t* src = reinterpret_cast<const uint16_t*>(tokens_) + begin;
    for (int64_t i = 0; i < count; ++i) {
      const uint16_t id = src[i];
      if (int64_t(id) >= vocab) bad(begin + i, id);
      out[i] = int32_t(id);
    }
  } else {
    const uint32_t* src = reinterpret_cast<const uint32_t*>(tokens_) + begin;
    for (int64_t i = 0; i < count; ++i) {
      const uint32_t id = src[i];
      if (int64_t(id) >= vocab || id > uint32_t(INT32_MAX)) bad(begin + i, id);
      out[i] = int32_t(id);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// TokenStream

TokenStream::TokenStream(const std::string& path_or_glob) : spec_(path_or_glob) {
  PENG_INPUT_CHECK(!path_or_glob.empty(), "token data: empty path");
  struct stat st;
  if (!has_glob_chars(path_or_glob) || ::stat(path_or_glob.c_str(), &st) == 0) {
    paths_.push_back(path_or_glob);
  } else {
    glob_t g{};
    int rc = ::glob(path_or_glob.c_str(), 0, nullptr, &g);
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) paths_.emplace_back(g.gl_pathv[i]);
    }
    ::globfree(&g);
    if (rc == GLOB_NOMATCH || (rc == 0 && paths_.empty())) {
      throw InputError(detail::concat("token data pattern ", path_or_glob, " matches no file"));
    }
    if (rc != 0) {
      throw InputError(detail::concat("token data pattern ", path_or_glob, ": glob failed (",
                                      rc == GLOB_ABORTED ? "read error" : "out of memory", ")"));
    }
    std::sort(paths_.begin(), paths_.end());
  }
  shards_.reserve(paths_.size());
  for (const auto& p : paths_) {
    shards_.emplace_back(p);
    starts_.push_back(total_);
    total_ += shards_.back().size();
  }
}

std::string TokenStream::describe() const {
  if (paths_.size() == 1 && paths_[0] == spec_) return spec_;
  return detail::concat(spec_, " (", paths_.size(), paths_.size() == 1 ? " file" : " files", ")");
}

void TokenStream::read(int64_t begin, int64_t count, int32_t* out, int64_t vocab) const {
  PENG_INPUT_CHECK(begin >= 0 && count >= 0 && begin <= total_ && count <= total_ - begin,
                   "token data ", describe(), ": read of [", begin, ", ", begin + count,
                   ") outside its ", total_, " tokens");
  if (count == 0) return;
  // The last shard whose start is <= begin (empty shards share starts with their successor).
  size_t k = size_t(std::upper_bound(starts_.begin(), starts_.end(), begin) - starts_.begin()) - 1;
  while (count > 0) {
    const TokenShard& s = shards_[k];
    const int64_t local = begin - starts_[k];
    const int64_t n = std::min(count, s.size() - local);
    if (n > 0) {
      s.read(local, n, out, vocab);
      out += n;
      begin += n;
      count -= n;
    }
    ++k;
  }
}

int64_t TokenSource::sequences_per_epoch(int64_t T) const {
  PENG_INPUT_CHECK(T > 0, "sequence length must be positive, got ", T);
  return size() > 0 ? (size() - 1) / T : 0;
}

void TokenSource::read_batch(int64_t step, int64_t first_seq, int64_t n_seq, int64_t global_batch,
                             int64_t T, int32_t* x, int32_t* y, int64_t vocab) const {
  PENG_INPUT_CHECK(step >= 0, "read_batch: negative step ", step);
  PENG_INPUT_CHECK(global_batch > 0, "read_batch: global batch must be positive, got ",
                   global_batch);
  const int64_t epoch = std::max<int64_t>(1, sequences_per_epoch(T));
  // step * global_batch mod E without overflowing.
  const int64_t base = int64_t((__int128(step % epoch) * __int128(global_batch % epoch)) % epoch);
  read_batch_at(base, first_seq, n_seq, global_batch, T, x, y, vocab);
}

void TokenSource::read_batch_at(int64_t batch_start, int64_t first_seq, int64_t n_seq,
                                int64_t global_batch, int64_t T, int32_t* x, int32_t* y,
                                int64_t vocab) const {
  PENG_INPUT_CHECK(batch_start >= 0, "read_batch: negative batch start ", batch_start);
  PENG_INPUT_CHECK(global_batch > 0, "read_batch: global batch must be positive, got ",
                   global_batch);
  PENG_INPUT_CHECK(first_seq >= 0 && n_seq >= 0 && first_seq + n_seq <= global_batch,
                   "read_batch: sequences [", first_seq, ", ", first_seq + n_seq,
                   ") outside the global batch of ", global_batch);
  PENG_INPUT_CHECK(vocab > 0, "read_batch: vocab size must be positive, got ", vocab);
  const int64_t epoch = sequences_per_epoch(T);
  PENG_INPUT_CHECK(epoch > 0, "token data ", describe(), " holds ", size(),
                   " tokens, fewer than the ", T + 1, " needed for one sequence of length ", T);
  const int64_t base = batch_start % epoch;
  for (int64_t i = 0; i < n_seq; ++i) {
    const int64_t g = (base + (first_seq + i) % epoch) % epoch;
    const int64_t offset = g * T;
    int32_t* xi = x + i * T;
    int32_t* yi = y + i * T;
    read(offset, T, xi, vocab);
    std::copy(xi + 1, xi + T, yi);
    read(offset + T, 1, yi + T - 1, vocab);
    // Checked again here: a program's own source may not check what it hands out.
    for (int64_t t = 0; t <= T; ++t) {
      const int32_t id = t < T ? xi[t] : yi[T - 1];
      PENG_INPUT_CHECK(id >= 0 && id < vocab, "token data ", describe(), ": token ", id,
                       " at position ", offset + t, " is outside the vocabulary (", vocab, ")");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens, bool wide) {
  PENG_INPUT_CHECK(tokens.size() <= size_t(INT32_MAX), "token shard ", path, ": ", tokens.size(),
                   " tokens exceed the format's limit of ", INT32_MAX);
  if (!wide) {
    wide = std::any_of(tokens.begin(), tokens.end(), [](uint32_t t) { return t > 0xFFFF; });
  }
  int32_t header[kShardHeaderInts] = {};
  header[0] = wide ? kShardMagicU32 : kShardMagicU16;
  header[1] = wide ? kShardVersionU32 : kShardVersionU16;
  header[2] = int32_t(tokens.size());

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    int err = errno;
    throw IoError(detail::concat("cannot create token shard ", tmp, ": ", errno_str(err)));
  }
  bool ok = std::fwrite(header, sizeof header, 1, f) == 1;
  if (wide) {
    ok = ok && (tokens.empty() ||
                std::fwrite(tokens.data(), sizeof(uint32_t), tokens.size(), f) == tokens.size());
  } else {
    std::vector<uint16_t> narrow(tokens.begin(), tokens.end());
    ok = ok && (narrow.empty() ||
                std::fwrite(narrow.data(), sizeof(uint16_t), narrow.size(), f) == narrow.size());
  }
  ok = ok && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    throw IoError(detail::concat("cannot write token shard ", path, ": ", errno_str(err)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    throw IoError(detail::concat("cannot rename ", tmp, " to ", path, ": ", errno_str(err)));
  }
}

}  // namespace peng
