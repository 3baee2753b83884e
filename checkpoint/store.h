// The checkpoint folder (`--checkpoint-dir ROOT`):
//
//   ROOT/step-00000200/       a committed checkpoint: manifest.pb + rank-NNNNN.bin files
//   ROOT/step-00000300.tmp/   a save in progress, or left by a crash (removed by the next save)
//   ROOT/latest               "step-00000200\n": the newest commit, replaced atomically
//
// A folder is committed by renaming its .tmp folder after every file in it, the manifest
// last, was fsynced (LevelDB's CURRENT pattern); `latest` is written the same way after.
// So a crash, kill -9 or full disk at any point leaves every committed checkpoint whole.
// `latest` decides what auto-resume uses: a crash between a folder's rename and the update
// of `latest` leaves a whole newer folder that auto-resume ignores (it can be named with
// --resume PATH) — the same choice as Megatron's latest_checkpointed_iteration.txt.
// Every change to the folder goes through a FileSystem (core/io/file_system.h), which tests
// replace to fail, fill up or crash at any one of its calls.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "peng/core/io/file_system.h"

namespace peng::ckpt {

inline constexpr char kLatestFile[] = "latest";

std::string step_dir_name(int64_t step);  // "step-00000200"
// ROOT/step-N.tmp: where a save of step N is written before it is committed.
std::filesystem::path tmp_dir(const std::filesystem::path& root, int64_t step);
std::string rank_file_name(int rank);  // "rank-00003.bin"

// The commit protocol's folder steps, on one rank (rank 0):
// Creates ROOT (and parents), removes stale step-*.tmp folders, creates tmp_dir(root, step).
void begin_save(const std::filesystem::path& root, int64_t step,
                FileSystem& fs = posix_file_system());
// Writes `manifest` (encoded) into tmp_dir(root, step), fsyncs it, renames the folder to
// ROOT/step-N (replacing one of a rerun), fsyncs ROOT, points `latest` at it, applies
// retention.
void publish(const std::filesystem::path& root, int64_t step, const std::string& manifest,
             int keep_last, FileSystem& fs = posix_file_system());

// Committed checkpoints in `root` (step-N folders holding a manifest.pb), by step.
std::vector<std::pair<int64_t, std::filesystem::path>> committed_checkpoints(
    const std::filesystem::path& root);

// The checkpoint `latest` names if it is committed, else the newest committed one.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& root);

// DIR itself when it holds a manifest.pb, else the latest committed checkpoint of the root
// DIR. InputError when DIR does not exist, is not a folder, or is neither.
std::filesystem::path resolve_checkpoint(const std::filesystem::path& dir);

// Removes committed checkpoints, oldest first, until at most `keep_last` remain; never
// `keep` (the one just committed) nor the one `latest` names. keep_last <= 0 keeps all.
void apply_retention(const std::filesystem::path& root, int keep_last,
                     const std::filesystem::path& keep, FileSystem& fs = posix_file_system());

}  // namespace peng::ckpt
