// The file layer (core/io/file_system.h): a file written around the page cache (O_DIRECT)
// through its aligned staging buffer holds exactly the bytes appended, for appends of any
// size crossing block and buffer boundaries; nothing may be appended after sync(); atomic
// writes commit through it; errors name the file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"
#include "peng/core/io/file_system.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;

// `n` bytes that differ from block to block and from file to file.
std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char((i * 131 + seed * 7 + i / 4096) & 0xff);
  return s;
}

class Files : public ::testing::TestWithParam<bool> {};

TEST_P(Files, HoldExactlyTheBytesAppended) {
  const bool direct = GetParam();
  testing::TempDir tmp;
  // Sizes around a block (4096) and the 8 MiB staging buffer, appended in pieces.
  const std::vector<std::vector<size_t>> cases = {{},
                                                  {1},
                                                  {4095},
                                                  {4096},
                                                  {4097},
                                                  {3, 4093, 4096, 1},
                                                  {8u << 20},
                                                  {(8u << 20) + 1},
                                                  {5000, (8u << 20) - 1, 12345},
                                                  std::vector<size_t>(3000, 4099)};
  unsigned seed = 0;
  for (const std::vector<size_t>& pieces : cases) {
    const fs::path path = tmp / ("f" + std::to_string(seed));
    std::string want;
    {
      std::unique_ptr<WritableFile> f = posix_file_system().create_file(path, {.direct = direct});
      for (size_t n : pieces) {
        const std::string bytes = pattern(n, ++seed);
        f->append(bytes.data(), bytes.size());
        want += bytes;
      }
      f->sync();
      f->close();
    }
    EXPECT_EQ(fs::file_size(path), want.size()) << path;
    EXPECT_TRUE(testing::read_file(path) == want) << path;
  }
}

TEST_P(Files, AtomicWriteCommitsThroughIt) {
  testing::TempDir tmp;
  const std::string bytes = pattern(100000, 3);
  AtomicFileWriter w(tmp / "x.bin", posix_file_system(), {.direct = GetParam()});
  w.write(bytes.data(), bytes.size());
  EXPECT_FALSE(fs::exists(tmp / "x.bin"));
  w.commit();
  EXPECT_TRUE(testing::read_file(tmp / "x.bin") == bytes);
  EXPECT_FALSE(fs::exists(tmp / "x.bin.tmp"));
}

INSTANTIATE_TEST_SUITE_P(DirectAndBuffered, Files, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Direct" : "Buffered"; });

// The open flags of this process's descriptor of `path` (-1 when it has none open).
long open_flags(const fs::path& path) {
  for (const fs::directory_entry& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (fs::read_symlink(e.path(), ec) != path) continue;
    std::istringstream info(
        testing::read_file("/proc/self/fdinfo/" + e.path().filename().string()));
    for (std::string key; info >> key;) {
      if (key == "flags:") {
        std::string octal;
        info >> octal;
        return std::stol(octal, nullptr, 8);
      }
    }
  }
  return -1;
}

// Where the file system takes O_DIRECT (a probe open says so), the file is open with it.
TEST(DirectFile, IsOpenAroundThePageCache) {
  testing::TempDir tmp;
  const int probe = ::open((tmp / "probe").c_str(), O_WRONLY | O_CREAT | O_DIRECT, 0644);
  if (probe < 0) GTEST_SKIP() << "this file system refuses O_DIRECT";
  ::close(probe);
  std::unique_ptr<WritableFile> f = posix_file_system().create_file(tmp / "f", {.direct = true});
  const long flags = open_flags(tmp / "f");
  ASSERT_GE(flags, 0);
  EXPECT_TRUE(flags & O_DIRECT) << std::oct << flags;
  std::unique_ptr<WritableFile> g = posix_file_system().create_file(tmp / "g", {});
  EXPECT_FALSE(open_flags(tmp / "g") & O_DIRECT);
  f->close();
  g->close();
}

TEST(DirectFile, NothingAfterSync) {
  testing::TempDir tmp;
  std::unique_ptr<WritableFile> f = posix_file_system().create_file(tmp / "f", {.direct = true});
  f->append("abc", 3);
  f->sync();
  EXPECT_THROW(f->append("d", 1), Error);
  f->close();
  EXPECT_EQ(testing::read_file(tmp / "f"), "abc");
}

TEST(FileSystem, ErrorsNameTheFile) {
  testing::TempDir tmp;
  for (bool direct : {true, false}) {
    try {
      posix_file_system().create_file(tmp / "no-such-folder" / "f", {.direct = direct});
      ADD_FAILURE() << "created a file in a missing folder";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("no-such-folder/f: creating failed: No such file"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(posix_file_system().rename(tmp / "a", tmp / "b"), IoError);
}

}  // namespace
}  // namespace peng
