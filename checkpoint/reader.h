// Loading a checkpoint under any layout.
//
// Each rank describes what it needs as Regions (checkpoint/box.h); read() turns them into
// global boxes, finds the saved shards that overlap each box, reads only the checksum
// chunks covering the overlap (pread, from whichever rank file holds them), verifies
// every chunk read, and copies the overlap into place. Nothing from the files is ever
// executed or trusted: the manifest is validated on open (checkpoint/manifest.h), each
// needed box must be covered exactly once, and data files must have the size the
// manifest records. Every failure is an InputError naming the checkpoint, tensor and file.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "peng/checkpoint.pb.h"
#include "peng/checkpoint/box.h"

namespace peng::ckpt {

class CheckpointReader {
 public:
  // Reads and validates DIR/manifest.pb.
  explicit CheckpointReader(std::filesystem::path dir);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const proto::Manifest& manifest() const { return manifest_; }
  const std::filesystem::path& dir() const { return dir_; }
  // The tensor's entry; throws naming the tensor when the checkpoint lacks it.
  const proto::TensorInfo& tensor(const std::string& name) const;

  // Fills every region from the checkpoint. Regions' logical shapes must match the saved ones.
  void read(const std::vector<Region>& regions);
  // The whole tensor `name` (logical shape), on the host.
  Tensor read_whole(const std::string& name);

  uint64_t bytes_read() const { return bytes_read_; }

 private:
  int open_file(const std::string& name, const std::string& tensor);
  void read_box(const proto::TensorInfo& t, const Region& r, const BoxPair& b);

  std::filesystem::path dir_;
  proto::Manifest manifest_;
  std::map<std::string, int> by_name_;
  std::map<std::string, int> fds_;
  std::vector<char> buffer_;
  uint64_t bytes_read_ = 0;
};

}  // namespace peng::ckpt
