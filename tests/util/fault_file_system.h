// A FileSystem (core/io/file_system.h) for fault tests, after LevelDB's FaultInjectionTestEnv:
// it forwards to the real file system, numbers every call that changes the disk (create_file,
// append, sync, close, rename, remove_all, create_directories, sync_dir; not the cleanup
// remove_file) and breaks call number `at` (0-based):
//   kFail       the call throws IoError "...: injected I/O error"
//   kDiskFull   the call throws IoError "...: No space left on device"; an append writes half
//               of its bytes first
//   kCrash      the process "dies" before the call: SimulatedCrash is thrown (not a
//               std::exception, so nothing catches it on the way out), every later call
//               throws it too and cleanup removals do nothing
//   kTornWrite  an append writes half of its bytes, then as kCrash
// After a crash, drop_unsynced() leaves the files as a power loss would: every file written
// through it cut to the bytes its last sync() covered (renames carry that along). Not
// modelled: a folder entry (a creation, a rename) that a crash loses because its folder was
// not synced; a real kill -9 end-to-end test covers the process side.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "peng/core/io/file_system.h"

namespace peng::testing {

struct SimulatedCrash {};

class FaultFileSystem : public FileSystemWrapper {
 public:
  enum class Fault { kNone, kFail, kDiskFull, kCrash, kTornWrite };

  FaultFileSystem(Fault fault = Fault::kNone, int at = -1);

  std::unique_ptr<WritableFile> create_file(const std::filesystem::path& path,
                                            const FileOptions& options) override;
  void rename(const std::filesystem::path& from, const std::filesystem::path& to) override;
  void remove_file(const std::filesystem::path& path) noexcept override;
  void remove_all(const std::filesystem::path& path) override;
  void create_directories(const std::filesystem::path& path) override;
  void sync_dir(const std::filesystem::path& dir) override;

  // The calls made (the broken one included), "append /tmp/x/rank-00000.bin", in order.
  const std::vector<std::string>& calls() const { return calls_; }
  bool crashed() const { return crashed_; }
  // Cuts every file written through this file system to its synced bytes.
  void drop_unsynced();

 private:
  class File;
  struct Sizes {
    uint64_t written = 0, synced = 0;
  };
  // Numbers the call; throws what the fault says when it is call `at_`. `partial`: an
  // append's half write to do first (kDiskFull, kTornWrite).
  void enter(const std::string& call, const std::function<void()>& partial = {});

  Fault fault_;
  int at_;
  bool crashed_ = false;
  std::vector<std::string> calls_;
  std::map<std::filesystem::path, Sizes> files_;
};

}  // namespace peng::testing
