#include "peng/checkpoint/store.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "peng/checkpoint/manifest.h"
#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"

namespace peng::ckpt {

namespace fs = std::filesystem;

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%08lld", static_cast<long long>(step));
  return buf;
}

std::string rank_file_name(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "rank-%05d.bin", rank);
  return buf;
}

fs::path tmp_dir(const fs::path& root, int64_t step) {
  return root / (step_dir_name(step) + ".tmp");
}

namespace {
// The step of a committed-folder name "step-N" (digits only), else -1.
int64_t step_of(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() == 5 || name.size() > 25) return -1;
  int64_t s = 0;
  for (char c : name.substr(5)) {
    if (c < '0' || c > '9') return -1;
    s = s * 10 + (c - '0');
  }
  return s;
}

fs::path latest_target(const fs::path& root) {
  std::ifstream in(root / kLatestFile);
  std::string name;
  if (!(in >> name) || step_of(name) < 0) return {};
  return root / name;
}
}  // namespace

void begin_save(const fs::path& root, int64_t step, FileSystem& files) {
  files.create_directories(root);
  for (const fs::directory_entry& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) == 0 && n.ends_with(".tmp")) files.remove_all(e.path());
  }
  files.create_directories(tmp_dir(root, step));
}

void publish(const fs::path& root, int64_t step, const std::string& manifest, int keep_last,
             FileSystem& files) {
  const fs::path tmp = tmp_dir(root, step), final_dir = root / step_dir_name(step);
  write_file_atomic(tmp / kManifestFile, manifest, Durability::kSynced, files);  // syncs tmp
  if (fs::exists(final_dir)) files.remove_all(final_dir);  // a rerun of this step
  files.rename(tmp, final_dir);
  files.sync_dir(root);
  write_file_atomic(root / kLatestFile, step_dir_name(step) + "\n", Durability::kSynced, files);
  apply_retention(root, keep_last, final_dir, files);
}

std::vector<std::pair<int64_t, fs::path>> committed_checkpoints(const fs::path& root) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(root, ec)) {
    const int64_t step = step_of(e.path().filename().string());
    if (step >= 0 && fs::exists(e.path() / kManifestFile)) out.emplace_back(step, e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<fs::path> latest_checkpoint(const fs::path& root) {
  const fs::path named = latest_target(root);
  if (!named.empty() && fs::exists(named / kManifestFile)) return named;
  const auto all = committed_checkpoints(root);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

void apply_retention(const fs::path& root, int keep_last, const fs::path& keep, FileSystem& files) {
  if (keep_last <= 0) return;
  const fs::path named = latest_target(root);
  auto all = committed_checkpoints(root);
  size_t count = all.size();
  for (const auto& [step, path] : all) {
    if (count <= size_t(keep_last)) break;
    if (fs::equivalent(path, keep) || (!named.empty() && path == named)) continue;
    files.remove_all(path);
    --count;
  }
}

fs::path resolve_checkpoint(const fs::path& dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  PENG_INPUT_CHECK(st.type() != fs::file_type::not_found, "checkpoint ", dir.string(),
                   ": no such folder");
  PENG_INPUT_CHECK(!ec, "checkpoint ", dir.string(), ": ", ec.message());
  PENG_INPUT_CHECK(fs::is_directory(st), "checkpoint ", dir.string(),
                   " is a file, not a checkpoint folder");
  if (fs::exists(dir / ckpt::kManifestFile, ec)) return dir;
  if (std::optional<fs::path> latest = ckpt::latest_checkpoint(dir)) return *latest;
  throw InputError(detail::concat("checkpoint ", dir.string(), ": not a checkpoint (no ",
                                  ckpt::kManifestFile,
                                  ") nor a checkpoint folder (no committed step-N checkpoint)"));
}

}  // namespace peng::ckpt
