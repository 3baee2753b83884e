#include "tests/util/fault_file_system.h"

#include <functional>

#include "peng/core/error.h"

namespace peng::testing {

namespace fs = std::filesystem;

class FaultFileSystem::File : public WritableFile {
 public:
  File(FaultFileSystem& owner, fs::path path, std::unique_ptr<WritableFile> base)
      : owner_(owner), path_(std::move(path)), base_(std::move(base)) {}

  void append(const void* data, size_t n) override {
    const size_t half = n / 2;
    owner_.enter("append " + path_.string(), [&] {
      base_->append(data, half);
      owner_.files_[path_].written += half;
    });
    base_->append(data, n);
    owner_.files_[path_].written += n;
  }

  void sync() override {
    owner_.enter("sync " + path_.string());
    base_->sync();
    Sizes& s = owner_.files_[path_];
    s.synced = s.written;
  }

  void close() override {
    owner_.enter("close " + path_.string());
    base_->close();
  }

 private:
  FaultFileSystem& owner_;
  fs::path path_;
  std::unique_ptr<WritableFile> base_;
};

FaultFileSystem::FaultFileSystem(Fault fault, int at)
    : FileSystemWrapper(posix_file_system()), fault_(fault), at_(at) {}

void FaultFileSystem::enter(const std::string& call, const std::function<void()>& partial) {
  if (crashed_) throw SimulatedCrash{};
  calls_.push_back(call);
  if (int(calls_.size()) - 1 != at_) return;
  switch (fault_) {
    case Fault::kNone:
      return;
    case Fault::kFail:
      throw IoError(call + ": injected I/O error");
    case Fault::kDiskFull:
      if (partial) partial();
      throw IoError(call + ": No space left on device");
    case Fault::kTornWrite:
      if (partial) partial();
      [[fallthrough]];
    case Fault::kCrash:
      crashed_ = true;
      throw SimulatedCrash{};
  }
}

std::unique_ptr<WritableFile> FaultFileSystem::create_file(const fs::path& path,
                                                           const FileOptions& options) {
  enter("create_file " + path.string());
  std::unique_ptr<WritableFile> file = base().create_file(path, options);
  files_[path] = {};
  return std::make_unique<File>(*this, path, std::move(file));
}

void FaultFileSystem::rename(const fs::path& from, const fs::path& to) {
  enter("rename " + from.string() + " -> " + to.string());
  base().rename(from, to);
  // Files at or under `from` now live under `to`.
  std::map<fs::path, Sizes> moved;
  for (auto it = files_.begin(); it != files_.end();) {
    const fs::path rel = it->first.lexically_relative(from);
    if (!rel.empty() && *rel.begin() != "..") {
      moved[rel == "." ? to : to / rel] = it->second;
      it = files_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [path, sizes] : moved) files_[path] = sizes;
}

void FaultFileSystem::remove_file(const fs::path& path) noexcept {
  if (!crashed_) base().remove_file(path);
}

void FaultFileSystem::remove_all(const fs::path& path) {
  enter("remove_all " + path.string());
  base().remove_all(path);
}

void FaultFileSystem::create_directories(const fs::path& path) {
  enter("create_directories " + path.string());
  base().create_directories(path);
}

void FaultFileSystem::sync_dir(const fs::path& dir) {
  enter("sync_dir " + dir.string());
  base().sync_dir(dir);
}

void FaultFileSystem::drop_unsynced() {
  for (const auto& [path, sizes] : files_) {
    std::error_code ec;
    if (fs::exists(path, ec) && fs::file_size(path, ec) > sizes.synced) {
      fs::resize_file(path, sizes.synced);
    }
  }
}

}  // namespace peng::testing
