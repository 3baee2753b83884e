#include "peng/core/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "peng/core/error.h"

namespace peng {

namespace {
IoError os_error(const std::string& what, const std::filesystem::path& p, int err) {
  return IoError(detail::concat(p.string(), ": ", what, " failed: ", std::strerror(err)));
}
}  // namespace

AtomicFileWriter::AtomicFileWriter(std::filesystem::path path)
    : path_(std::move(path)), tmp_path_(path_.string() + ".tmp") {
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw os_error("creating", tmp_path_, errno);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_path_.c_str());
  }
}

void AtomicFileWriter::write(const void* data, size_t n) {
  PENG_CHECK(fd_ >= 0, path_.string(), ": write after commit");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // Linux writes at most ~2 GiB per call; chunk to stay well below.
    size_t chunk = n < (size_t(1) << 30) ? n : (size_t(1) << 30);
    ssize_t w = ::write(fd_, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw os_error("writing", tmp_path_, errno);
    }
    p += w;
    n -= size_t(w);
    written_ += size_t(w);
  }
}

void AtomicFileWriter::commit(Durability durability) {
  PENG_CHECK(fd_ >= 0, path_.string(), ": commit called twice");
  const bool sync = durability == Durability::kSynced;
  if (sync && ::fsync(fd_) != 0) throw os_error("fsync of", tmp_path_, errno);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp_path_.c_str());
    throw os_error("closing", tmp_path_, err);
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp_path_.c_str());
    throw os_error("renaming " + tmp_path_.string() + " to", path_, err);
  }
  if (!sync) return;
  std::filesystem::path dir = path_.parent_path();
  fsync_dir(dir.empty() ? std::filesystem::path(".") : dir);  // the rename itself, durable
}

void fsync_dir(const std::filesystem::path& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes,
                       Durability durability) {
  AtomicFileWriter w(path);
  w.write(bytes);
  w.commit(durability);
}

}  // namespace peng
