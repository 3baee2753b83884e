// The file operations that write durable state (checkpoints, atomic files) go through, as
// LevelDB's Env: the real POSIX file system by default, and in tests one that fails, fills up
// or "crashes" at a chosen call (tests/util/fault_file_system.h), so the shipped binary holds
// no test hook and a test can break every write and rename of a save.
//
// Every method throws peng::IoError naming the path and the operating-system reason, except
// remove_file (cleanup after a failure: best effort, never throws).
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>

namespace peng {

struct FileOptions {
  // Write around the page cache (O_DIRECT), through an aligned staging buffer: appends of
  // any size at any offset; sync() writes the last partial block padded and cuts the file
  // back to its size, so nothing may be appended after it. Where the file system refuses
  // O_DIRECT (at open or at the first write) the file is written buffered, and the first
  // such file of the process says so on stderr.
  bool direct = false;
};

// A file open for appending (created or truncated by FileSystem::create_file).
class WritableFile {
 public:
  virtual ~WritableFile() = default;  // closes the file if close() was not called
  // Appends n bytes (all of them: partial writes and EINTR are retried).
  virtual void append(const void* data, size_t n) = 0;
  // The bytes appended so far survive a crash (fsync).
  virtual void sync() = 0;
  // Closes; a write error the kernel deferred shows here.
  virtual void close() = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  virtual std::unique_ptr<WritableFile> create_file(const std::filesystem::path& path,
                                                    const FileOptions& options) = 0;
  // Replaces `to` atomically (a file, or an empty folder for a folder).
  virtual void rename(const std::filesystem::path& from, const std::filesystem::path& to) = 0;
  virtual void remove_file(const std::filesystem::path& path) noexcept = 0;
  virtual void remove_all(const std::filesystem::path& path) = 0;
  virtual void create_directories(const std::filesystem::path& path) = 0;
  // The folder's entries (creations, renames) survive a crash. Best effort: some file
  // systems refuse fsync on folders.
  virtual void sync_dir(const std::filesystem::path& dir) = 0;
};

// The real one (open/write/fsync/rename and std::filesystem).
FileSystem& posix_file_system();

// Forwards every call to `base` (LevelDB's EnvWrapper): a test file system overrides only
// what it breaks.
class FileSystemWrapper : public FileSystem {
 public:
  explicit FileSystemWrapper(FileSystem& base) : base_(base) {}
  std::unique_ptr<WritableFile> create_file(const std::filesystem::path& path,
                                            const FileOptions& options) override {
    return base_.create_file(path, options);
  }
  void rename(const std::filesystem::path& from, const std::filesystem::path& to) override {
    base_.rename(from, to);
  }
  void remove_file(const std::filesystem::path& path) noexcept override { base_.remove_file(path); }
  void remove_all(const std::filesystem::path& path) override { base_.remove_all(path); }
  void create_directories(const std::filesystem::path& path) override {
    base_.create_directories(path);
  }
  void sync_dir(const std::filesystem::path& dir) override { base_.sync_dir(dir); }

 protected:
  FileSystem& base() { return base_; }

 private:
  FileSystem& base_;
};

}  // namespace peng
