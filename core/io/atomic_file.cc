#include "peng/core/io/atomic_file.h"

#include "peng/core/error.h"

namespace peng {

AtomicFileWriter::AtomicFileWriter(std::filesystem::path path, FileSystem& fs,
                                   const FileOptions& options)
    : fs_(fs),
      path_(std::move(path)),
      tmp_path_(path_.string() + ".tmp"),
      file_(fs_.create_file(tmp_path_, options)) {}

AtomicFileWriter::~AtomicFileWriter() {
  if (file_) {
    file_.reset();  // closes
    fs_.remove_file(tmp_path_);
  }
}

void AtomicFileWriter::write(const void* data, size_t n) {
  PENG_CHECK(file_ != nullptr, path_.string(), ": write after commit");
  file_->append(data, n);
  written_ += n;
}

void AtomicFileWriter::commit(Durability durability) {
  PENG_CHECK(file_ != nullptr, path_.string(), ": commit called twice");
  const bool sync = durability == Durability::kSynced;
  try {
    if (sync) file_->sync();
    file_->close();
    file_.reset();
    fs_.rename(tmp_path_, path_);
  } catch (...) {
    file_.reset();
    fs_.remove_file(tmp_path_);
    throw;
  }
  if (!sync) return;
  const std::filesystem::path dir = path_.parent_path();
  fs_.sync_dir(dir.empty() ? std::filesystem::path(".") : dir);  // the rename itself, durable
}

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes,
                       Durability durability, FileSystem& fs) {
  AtomicFileWriter w(path, fs);
  w.write(bytes);
  w.commit(durability);
}

}  // namespace peng
