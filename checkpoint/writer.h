// Saving a checkpoint: plan, write in parallel (one file per rank), commit atomically.
//
// plan_regions() lays out this rank's data file: every region's boxes, row-major, one after
// another. write_plan() writes it, checksumming each chunk: a box that is one contiguous
// run of the rank's memory (most are: any flat range of an unsplit or row-split tensor) is
// written straight from that memory, the others are gathered into a scratch buffer first.
// snapshot() copies every box into a buffer the caller keeps from save to save, after which
// the training state may change. commit_checkpoint() then, collectively:
//   1. rank 0 clears stale ROOT/*.tmp folders and creates ROOT/step-N.tmp;
//   2. every rank writes and fsyncs its file there;
//   3. rank 0 gathers every rank's shard list, writes manifest.pb, fsyncs the folder,
//      renames it to ROOT/step-N, writes `latest`, applies --keep-last.
// Every write, rename and removal goes through a FileSystem (core/io/file_system.h); the
// rank files are created with `data_files` (FileOptions::direct: around the page cache).
// Every rank learns the outcome of steps 1-3; a failure anywhere throws on every rank
// (IoError naming the rank that failed) and leaves earlier checkpoints untouched.
//
// Checkpointer adds asynchrony: save() snapshots on the calling thread and writes and
// commits on a background thread while training continues; the next save() (or wait())
// waits for it first. A synchronous save writes straight from the training state. The
// background thread's collectives use the communicator given to the Checkpointer, which
// nobody else may use.
#pragma once

#include <cstdint>
#include <exception>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "peng/checkpoint.pb.h"
#include "peng/checkpoint/box.h"
#include "peng/core/io/file_system.h"
#include "peng/parallel/communicator.h"

namespace peng::ckpt {

inline constexpr uint64_t kChunkBytes = uint64_t(4) << 20;

struct SavePlan {
  struct Piece {
    size_t tensor = 0, shard = 0;  // tensors[tensor].shards(shard)
    const float* src = nullptr;    // the box's bytes, contiguous; else gathered from:
    const Region* region = nullptr;
    BoxPair box;
  };
  std::string file;                        // "rank-00003.bin"
  uint64_t bytes = 0;                      // its size
  std::vector<proto::TensorInfo> tensors;  // this rank's shards, by tensor
  std::vector<Piece> pieces;               // in file order
};
// The plan of `regions` (which must outlive it until written or snapshot).
SavePlan plan_regions(const std::vector<Region>& regions, int rank);
// Copies every piece into `buffer` (resized; keep it across saves so its pages stay
// mapped) and points the plan at it.
void snapshot(SavePlan& plan, std::vector<char>& buffer);
// Writes the plan's file at `path` atomically, filling in the chunk checksums.
void write_plan(SavePlan& plan, const std::filesystem::path& path,
                uint64_t chunk_bytes = kChunkBytes, FileSystem& fs = posix_file_system(),
                const FileOptions& data_files = {});

// `meta`: the manifest without files, tensors and chunk_bytes (filled in here). `comm`:
// every rank of the job (nullptr: a single process). Returns ROOT/step-N.
std::filesystem::path commit_checkpoint(SavePlan& plan, proto::Manifest meta,
                                        const std::filesystem::path& root, int keep_last,
                                        Communicator* comm, FileSystem& fs = posix_file_system(),
                                        const FileOptions& data_files = {});

class Checkpointer {
 public:
  Checkpointer(std::filesystem::path root, int keep_last, bool async, Communicator* comm,
               const FileOptions& data_files = {}, FileSystem& fs = posix_file_system());
  // Waits for a save in flight; a failure there is printed, not thrown.
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Saves `regions` as checkpoint meta.step(). Returns the seconds the caller was blocked
  // (the previous save, the snapshot, and the whole write when synchronous).
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
  FileOptions data_files_;
  FileSystem& fs_;
  std::thread thread_;
  std::exception_ptr error_;
  std::filesystem::path pending_, last_;
  std::vector<char> snapshot_;  // async saves' copy of the state, reused
};

}  // namespace peng::ckpt
