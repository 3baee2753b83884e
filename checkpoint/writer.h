// Saving a checkpoint: stage, write in parallel (one file per rank), commit atomically.
//
// stage_regions() copies what this rank saves into the byte image of its data file
// (every region's boxes, row-major, one after another) and checksums it in chunks; after
// it returns the training state may change. commit_checkpoint() then, collectively:
//   1. rank 0 clears stale ROOT/*.tmp folders and creates ROOT/step-N.tmp;
//   2. every rank writes and fsyncs its file there;
//   3. rank 0 gathers every rank's shard list, writes manifest.pb, fsyncs the folder,
//      renames it to ROOT/step-N, writes `latest`, applies --keep-last.
// Every rank learns the outcome of steps 1-3; a failure anywhere throws on every rank
// (IoError naming the rank that failed) and leaves earlier checkpoints untouched.
//
// Checkpointer adds asynchrony: save() stages on the calling thread and, when async,
// writes and commits on a background thread while training continues; the next save()
// (or wait()) waits for it first. The background thread's collectives use the
// communicator given to the Checkpointer, which nobody else may use.
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/box.h"
#include "parallel/communicator.h"
#include "peng/checkpoint.pb.h"

namespace peng::ckpt {

inline constexpr uint64_t kChunkBytes = uint64_t(4) << 20;

struct StagedShards {
  std::string file;                        // "rank-00003.bin"
  std::vector<char> bytes;                 // its content
  std::vector<proto::TensorInfo> tensors;  // this rank's shards, by tensor
};
StagedShards stage_regions(const std::vector<Region>& regions, int rank,
                           uint64_t chunk_bytes = kChunkBytes);

// `meta`: the manifest without files, tensors and chunk_bytes (filled in here). `comm`:
// every rank of the job (nullptr: a single process). Returns ROOT/step-N.
std::filesystem::path commit_checkpoint(const StagedShards& shards, proto::Manifest meta,
                                        const std::filesystem::path& root, int keep_last,
                                        Communicator* comm);

class Checkpointer {
 public:
  Checkpointer(std::filesystem::path root, int keep_last, bool async, Communicator* comm);
  // Waits for a save in flight; a failure there is printed, not thrown.
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Saves `regions` as checkpoint meta.step(). Returns the seconds the caller was blocked
  // (the previous save, staging, and the whole write when synchronous).
  double save(const std::vector<Region>& regions, proto::Manifest meta);
  // Waits for the save in flight; rethrows its failure.
  void wait();
  // The folder of the last save that completed (empty before).
  const std::filesystem::path& last_committed() const { return last_; }

 private:
  std::filesystem::path root_;
  int keep_last_;
  bool async_;
  Communicator* comm_;
  std::thread thread_;
  std::exception_ptr error_;
  std::filesystem::path pending_, last_;
};

}  // namespace peng::ckpt
