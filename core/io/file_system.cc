#include "peng/core/io/file_system.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "peng/core/error.h"

namespace peng {

namespace {

namespace fs = std::filesystem;

IoError os_error(const std::string& what, const fs::path& p, int err) {
  return IoError(detail::concat(p.string(), ": ", what, " failed: ", std::strerror(err)));
}

class PosixFile : public WritableFile {
 public:
  PosixFile(fs::path path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void append(const void* data, size_t n) override {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      // Linux writes at most ~2 GiB per call; chunk to stay well below.
      const size_t chunk = n < (size_t(1) << 30) ? n : (size_t(1) << 30);
      const ssize_t w = ::write(fd_, p, chunk);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw os_error("writing", path_, errno);
      }
      p += w;
      n -= size_t(w);
    }
  }

  void sync() override {
    if (::fsync(fd_) != 0) throw os_error("fsync of", path_, errno);
  }

  void close() override {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw os_error("closing", path_, errno);
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

class PosixFileSystem : public FileSystem {
 public:
  std::unique_ptr<WritableFile> create_file(const fs::path& path) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
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
