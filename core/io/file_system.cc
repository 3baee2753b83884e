#include "peng/core/io/file_system.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "peng/core/error.h"

namespace peng {

namespace {

namespace fs = std::filesystem;

IoError os_error(const std::string& what, const fs::path& p, int err) {
  return IoError(detail::concat(p.string(), ": ", what, " failed: ", std::strerror(err)));
}

// The first file of the process that could not be written around the page cache says so.
void report_buffered(const fs::path& path, int err) {
  static std::atomic<bool> reported{false};
  if (reported.exchange(true)) return;
  std::fprintf(stderr, "peng: %s: the file system refuses O_DIRECT (%s); writing buffered\n",
               path.parent_path().c_str(), std::strerror(err));
}

class PosixFile : public WritableFile {
 public:
  PosixFile(fs::path path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void append(const void* data, size_t n) override {
    write_fully(static_cast<const char*>(data), n);
  }

  void sync() override {
    if (::fsync(fd_) != 0) throw os_error("fsync of", path_, errno);
  }

  void close() override {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw os_error("closing", path_, errno);
  }

 protected:
  // Writes all n bytes: chunks Linux accepts (at most ~2 GiB per call), EINTR retried. A
  // write an O_DIRECT descriptor's file system refuses (EINVAL) turns O_DIRECT off (said
  // once) and goes on buffered.
  void write_fully(const char* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, std::min(n, size_t(1) << 30));
      if (w < 0 && errno == EINVAL && (::fcntl(fd_, F_GETFL) & O_DIRECT)) {
        report_buffered(path_, errno);
        if (::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_DIRECT) != 0) {
          throw os_error("turning off O_DIRECT on", path_, errno);
        }
        continue;
      }
      if (w < 0) {
        if (errno == EINTR) continue;
        throw os_error("writing", path_, errno);
      }
      p += w;
      n -= size_t(w);
    }
  }

  fs::path path_;
  int fd_ = -1;
};

// O_DIRECT: offsets, lengths and buffers aligned to kAlign (the logical block size of every
// common disk and file system is at most 4096).
constexpr size_t kAlign = 4096;
constexpr size_t kStagingBytes = size_t(8) << 20;

// A file opened O_DIRECT. Appends go into an aligned staging buffer that is written whenever
// it is full; sync() and close() write the last partial block padded with zeros and cut the
// file back to its size.
class DirectFile : public PosixFile {
 public:
  DirectFile(fs::path path, int fd)
      : PosixFile(std::move(path), fd),
        buffer_(static_cast<char*>(std::aligned_alloc(kAlign, kStagingBytes))) {
    if (!buffer_) throw IoError(path_.string() + ": cannot allocate the O_DIRECT staging buffer");
  }
  ~DirectFile() override { std::free(buffer_); }

  void append(const void* data, size_t n) override {
    PENG_CHECK(!finished_, path_.string(), ": append after sync on an O_DIRECT file");
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const size_t take = std::min(n, kStagingBytes - used_);
      std::memcpy(buffer_ + used_, p, take);
      used_ += take;
      size_ += take;
      p += take;
      n -= take;
      if (used_ == kStagingBytes) {
        write_fully(buffer_, used_);
        used_ = 0;
      }
    }
  }

  void sync() override {
    finish();
    PosixFile::sync();
  }

  void close() override {
    finish();
    PosixFile::close();
  }

 private:
  // The staged tail, padded to a whole block, then the file cut back to its size.
  void finish() {
    if (finished_) return;
    finished_ = true;
    if (used_ == 0) return;
    const size_t padded = (used_ + kAlign - 1) / kAlign * kAlign;
    std::memset(buffer_ + used_, 0, padded - used_);
    write_fully(buffer_, padded);
    used_ = 0;
    if (::ftruncate(fd_, off_t(size_)) != 0) throw os_error("truncating", path_, errno);
  }

  char* buffer_ = nullptr;
  size_t used_ = 0;    // staged bytes
  uint64_t size_ = 0;  // bytes appended
  bool finished_ = false;
};

class PosixFileSystem : public FileSystem {
 public:
  std::unique_ptr<WritableFile> create_file(const fs::path& path,
                                            const FileOptions& options) override {
    const int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
    if (options.direct) {
      const int fd = ::open(path.c_str(), flags | O_DIRECT, 0644);
      if (fd >= 0) return std::make_unique<DirectFile>(path, fd);
      if (errno != EINVAL) throw os_error("creating", path, errno);
      report_buffered(path, errno);
    }
    const int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) throw os_error("creating", path, errno);
    return std::make_unique<PosixFile>(path, fd);
  }

  void rename(const fs::path& from, const fs::path& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      throw os_error("renaming " + from.string() + " to", to, errno);
    }
  }

  void remove_file(const fs::path& path) noexcept override { ::unlink(path.c_str()); }

  void remove_all(const fs::path& path) override {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec) throw os_error("removing", path, ec.value());
  }

  void create_directories(const fs::path& path) override {
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec) throw os_error("creating the folder", path, ec.value());
  }

  void sync_dir(const fs::path& dir) override {
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }
};

}  // namespace

FileSystem& posix_file_system() {
  static PosixFileSystem fs;
  return fs;
}

}  // namespace peng
