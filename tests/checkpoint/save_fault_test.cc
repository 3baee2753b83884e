// A checkpoint save broken at every call it makes to the file system (core/io/file_system.h,
// tests/util/fault_file_system.h), in one process: an I/O error, a full disk, a crash before
// the call and a torn write each leave the checkpoints committed before it loadable, `latest`
// naming a whole checkpoint, and the next save succeeding over the debris. The failures are
// one IoError naming the file. (checkpoint_fault_test.cc kills real ranks end to end.)
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <tuple>

#include "peng/checkpoint/manifest.h"
#include "peng/checkpoint/reader.h"
#include "peng/checkpoint/store.h"
#include "peng/checkpoint/writer.h"
#include "peng/core/error.h"
#include "tests/util/fault_file_system.h"
#include "tests/util/test_util.h"

namespace peng::ckpt {
namespace {

namespace fs = std::filesystem;
using Fault = testing::FaultFileSystem::Fault;

// Tensor `name` of step `step`: every element names the step and its index.
Tensor values(const Shape& shape, int64_t step) {
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(step * 100000 + i);
  return t;
}

// Saves step `step` (two tensors) with --keep-last 2.
void save(const fs::path& root, int64_t step, FileSystem& files, bool direct = true) {
  Tensor a = values({1000}, step), b = values({3, 500}, step);
  const std::vector<Region> regions{{.tensor = "a",
                                     .logical_shape = {1000},
                                     .global_shape = {1000},
                                     .spec = {},
                                     .begin = 0,
                                     .end = 1000,
                                     .data = a.data<float>()},
                                    {.tensor = "b",
                                     .logical_shape = {3, 500},
                                     .global_shape = {3, 500},
                                     .spec = {},
                                     .begin = 0,
                                     .end = 1500,
                                     .data = b.data<float>()}};
  SavePlan plan = plan_regions(regions, 0);
  proto::Manifest meta;
  meta.set_step(step);
  commit_checkpoint(plan, meta, root, /*keep_last=*/2, nullptr, files, {.direct = direct});
}

// Whether `dir` is step `step`'s whole checkpoint (every chunk verified on read).
void expect_step(const fs::path& dir, int64_t step) {
  CheckpointReader reader(dir);
  EXPECT_EQ(reader.manifest().step(), step) << dir;
  for (const auto& [name, shape] : {std::pair<std::string, Shape>{"a", {1000}}, {"b", {3, 500}}}) {
    const Tensor got = reader.read_whole(name), want = values(shape, step);
    ASSERT_EQ(got.numel(), want.numel()) << name;
    for (int64_t i = 0; i < got.numel(); ++i) {
      ASSERT_EQ(got.data<float>()[i], want.data<float>()[i])
          << dir << " " << name << "[" << i << "]";
    }
  }
}

// A folder with steps 1 and 2 committed; the save of step 3 will retire step 1.
void two_committed(const fs::path& root) {
  save(root, 1, posix_file_system());
  save(root, 2, posix_file_system());
}

struct Outcome {
  bool new_folder_whole = false;  // step-00000003 committed
  bool latest_moved = false;      // `latest` names step 3
};

// After a broken save of step 3: what was committed must load, and a new save must work.
Outcome check_after(const fs::path& root) {
  Outcome o;
  const std::optional<fs::path> latest = latest_checkpoint(root);
  EXPECT_TRUE(latest.has_value());
  if (!latest) return o;
  o.latest_moved = *latest == root / "step-00000003";
  EXPECT_TRUE(o.latest_moved || *latest == root / "step-00000002") << *latest;
  expect_step(*latest, o.latest_moved ? 3 : 2);
  if (fs::exists(root / "step-00000002" / kManifestFile)) expect_step(root / "step-00000002", 2);
  o.new_folder_whole = fs::exists(root / "step-00000003" / kManifestFile);
  if (o.new_folder_whole) expect_step(root / "step-00000003", 3);
  save(root, 3, posix_file_system());  // over whatever the broken save left
  EXPECT_EQ(latest_checkpoint(root), root / "step-00000003");
  expect_step(root / "step-00000003", 3);
  EXPECT_FALSE(fs::exists(root / "step-00000003.tmp"));
  return o;
}

// The calls a save of step 3 over two committed checkpoints makes.
std::vector<std::string> calls_of_a_save() {
  testing::TempDir tmp;
  two_committed(tmp.path());
  testing::FaultFileSystem counting;
  save(tmp.path(), 3, counting);
  return counting.calls();
}

TEST(SaveFaults, TheCallsOfASave) {
  const std::vector<std::string> calls = calls_of_a_save();
  // The rank file and the manifest: created, written, synced, closed, renamed; the folder
  // renamed and synced; `latest` replaced; step 1 retired.
  std::set<std::string> kinds;
  for (const std::string& c : calls) kinds.insert(c.substr(0, c.find(' ')));
  EXPECT_EQ(kinds, (std::set<std::string>{"append", "close", "create_directories", "create_file",
                                          "remove_all", "rename", "sync", "sync_dir"}));
  EXPECT_GE(calls.size(), 20u);
  EXPECT_NE(calls.back().find("remove_all"), std::string::npos) << calls.back();
  EXPECT_NE(calls.back().find("step-00000001"), std::string::npos) << calls.back();
}

// Each fault, with the rank file written around the page cache (O_DIRECT) and buffered.
class SaveFaults : public ::testing::TestWithParam<std::tuple<Fault, bool>> {};

TEST_P(SaveFaults, EveryCallOfASave) {
  const auto [fault, direct] = GetParam();
  const std::vector<std::string> calls = calls_of_a_save();
  int broken = 0, folder_but_not_latest = 0;
  for (int at = 0; at < int(calls.size()); ++at) {
    if (fault == Fault::kTornWrite && !calls[size_t(at)].starts_with("append ")) continue;
    SCOPED_TRACE("call " + std::to_string(at) + ": " + calls[size_t(at)]);
    testing::TempDir tmp;
    two_committed(tmp.path());
    testing::FaultFileSystem files(fault, at);
    if (fault == Fault::kFail || fault == Fault::kDiskFull) {
      try {
        save(tmp.path(), 3, files, direct);
        ADD_FAILURE() << "the save did not fail";
      } catch (const IoError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(tmp.path().string()), std::string::npos) << what;
        EXPECT_NE(
            what.find(fault == Fault::kFail ? "injected I/O error" : "No space left on device"),
            std::string::npos)
            << what;
      }
    } else {
      EXPECT_THROW(save(tmp.path(), 3, files, direct), testing::SimulatedCrash);
      EXPECT_TRUE(files.crashed());
      files.drop_unsynced();
    }
    const Outcome o = check_after(tmp.path());
    ++broken;
    if (o.new_folder_whole && !o.latest_moved) ++folder_but_not_latest;
  }
  // Every call was broken once, including between the folder's rename and `latest`.
  EXPECT_GE(broken, fault == Fault::kTornWrite ? 2 : int(calls.size()));
  if (fault != Fault::kTornWrite) EXPECT_GE(folder_but_not_latest, 1);
}

INSTANTIATE_TEST_SUITE_P(Faults, SaveFaults,
                         ::testing::Combine(::testing::Values(Fault::kFail, Fault::kDiskFull,
                                                              Fault::kCrash, Fault::kTornWrite),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           const Fault f = std::get<0>(info.param);
                           const std::string name = f == Fault::kFail       ? "IoError"
                                                    : f == Fault::kDiskFull ? "DiskFull"
                                                    : f == Fault::kCrash    ? "Crash"
                                                                            : "TornWrite";
                           return name + (std::get<1>(info.param) ? "Direct" : "Buffered");
                         });

}  // namespace
}  // namespace peng::ckpt
