// Atomic file writes: write to `path + ".tmp"`, fsync, rename over `path`, fsync the folder.
//
// A reader therefore sees either the old file or the complete new one, never a torn write
// (LevelDB's SetCurrentFile pattern). Failures throw peng::IoError naming the file and the
// operating-system reason; the temporary file is removed when the writer is destroyed
// without commit(). Every call goes through a FileSystem (core/io/file_system.h).
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string_view>

#include "peng/core/io/file_system.h"

namespace peng {

// kSynced: fsync the file and the folder, so the new content survives a crash (checkpoints,
// manifests). kAtomicOnly: readers still see old or new, never torn, but a crash may keep
// the old file (metrics rewritten every step, where an fsync would cost more than the data).
enum class Durability { kSynced, kAtomicOnly };

class AtomicFileWriter {
 public:
  // Creates (truncates) `path + ".tmp"`. The folder must exist.
  explicit AtomicFileWriter(std::filesystem::path path, FileSystem& fs = posix_file_system(),
                            const FileOptions& options = {});
  // Without commit(): closes and removes the temporary file (never throws).
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends n bytes (retries partial writes and EINTR).
  void write(const void* data, size_t n);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  // fsync, close, rename to the final path, fsync the folder (kAtomicOnly: close and
  // rename). Call at most once.
  void commit(Durability durability = Durability::kSynced);

  const std::filesystem::path& path() const { return path_; }
  size_t bytes_written() const { return written_; }

 private:
  FileSystem& fs_;
  std::filesystem::path path_;
  std::filesystem::path tmp_path_;
  std::unique_ptr<WritableFile> file_;  // null after commit()
  size_t written_ = 0;
};

// Writes `bytes` to `path` atomically (see AtomicFileWriter).
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes,
                       Durability durability = Durability::kSynced,
                       FileSystem& fs = posix_file_system());

}  // namespace peng
