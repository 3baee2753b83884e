// TensorBoard event files: CRC-32C against RFC 3720's vectors, the writer read back by
// peng's own verifying reader, corruption reported with its byte offset, and (where the
// Python `tensorboard` package is installed) the file loaded by TensorBoard itself.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "peng/core/error.h"
#include "peng/telemetry/tensorboard/crc32c.h"
#include "peng/telemetry/tensorboard/event_file.h"
#include "tests/util/test_util.h"

namespace peng::tensorboard {
namespace {

using peng::testing::read_file;
using peng::testing::TempDir;
using peng::testing::write_file;

uint32_t crc_of(const std::vector<unsigned char>& bytes) {
  return crc32c(bytes.data(), bytes.size());
}

TEST(Crc32c, Rfc3720Vectors) {
  std::vector<unsigned char> v(32, 0x00);
  EXPECT_EQ(crc_of(v), 0x8A9136AAu);
  std::fill(v.begin(), v.end(), 0xFF);
  EXPECT_EQ(crc_of(v), 0x62A8AB43u);
  std::iota(v.begin(), v.end(), 0);
  EXPECT_EQ(crc_of(v), 0x46DD794Eu);
  std::iota(v.rbegin(), v.rend(), 0);
  EXPECT_EQ(crc_of(v), 0x113FDB5Cu);
  const std::vector<unsigned char> read_pdu = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  ASSERT_EQ(read_pdu.size(), 48u);
  EXPECT_EQ(crc_of(read_pdu), 0xD9963A56u);
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(Crc32c, ExtendEqualsOnePiece) {
  const std::string s = "The quick brown fox jumps over the lazy dog";
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    EXPECT_EQ(crc32c_extend(crc32c(s.data(), cut), s.data() + cut, s.size() - cut),
              crc32c(s.data(), s.size()))
        << "cut at " << cut;
  }
}

TEST(Crc32c, Masked) {
  // crc32c("123456789") = 0xE3069283; rotated right by 15 = 0x25079C0D; + 0xa282ead8.
  EXPECT_EQ(masked_crc32c("123456789", 9), 0xC78AB0E5u);
}

// The one event file in `dir`.
std::filesystem::path only_file(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path());
  EXPECT_EQ(files.size(), 1u);
  return files.empty() ? std::filesystem::path() : files[0];
}

TEST(EventFile, FileVersionFirstAndName) {
  TempDir tmp;
  const auto folder = tmp / "runs/a";  // created with its parents
  {
    EventFileWriter w(folder);
    EXPECT_EQ(w.path().parent_path(), folder);
    const std::string name = w.path().filename().string();
    EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
    EXPECT_NE(name.find("." + std::to_string(getpid())), std::string::npos) << name;
    w.flush();
  }
  const auto events = read_event_file(only_file(folder));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_GT(events[0].wall_time(), 1.6e9);
}

TEST(EventFile, ScalarsRoundTrip) {
  TempDir tmp;
  std::filesystem::path path;
  {
    EventFileWriter w(tmp.path());
    path = w.path();
    w.add_scalar("train/loss", 0, 10.75, 1234.5);
    w.add_scalar("train/loss", 1, 0.1);
    w.add_scalars(1, {{"train/lr", 3e-4}, {"train/grad_norm", 1.5}});
    w.add_scalar("train/loss", int64_t{1} << 40, -2.25);
    w.add_scalar("train/nan", 2, std::nan(""));
    w.flush();
  }
  const auto events = read_event_file(path);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[1].wall_time(), 1234.5);
  EXPECT_EQ(events[3].step(), 1);
  ASSERT_EQ(events[3].summary().value_size(), 2);  // add_scalars: one Event
  EXPECT_EQ(events[3].summary().value(0).tag(), "train/lr");
  EXPECT_EQ(events[3].summary().value(1).tag(), "train/grad_norm");

  const auto s = read_scalars(path);
  ASSERT_EQ(s.size(), 4u);
  using Series = std::vector<std::pair<int64_t, double>>;
  // simple_value is a float: values come back rounded to float precision.
  EXPECT_EQ(s.at("train/loss"),
            (Series{{0, 10.75}, {1, static_cast<float>(0.1)}, {int64_t{1} << 40, -2.25}}));
  EXPECT_EQ(s.at("train/lr"), (Series{{1, static_cast<float>(3e-4)}}));
  EXPECT_EQ(s.at("train/grad_norm"), (Series{{1, 1.5}}));
  ASSERT_EQ(s.at("train/nan").size(), 1u);
  EXPECT_TRUE(std::isnan(s.at("train/nan")[0].second));
}

TEST(EventFile, SeveralWritersInOneFolder) {
  TempDir tmp;
  EventFileWriter a(tmp.path()), b(tmp.path());  // same second, same pid: distinct files
  EXPECT_NE(a.path(), b.path());
  for (int step = 0; step < 100; ++step) {
    a.add_scalar("x", step, step * 0.5);
    b.add_scalars(step, {{"y", -step}, {"z", step * step}});
  }
  a.flush();
  b.flush();
  const auto sa = read_scalars(a.path()), sb = read_scalars(b.path());
  ASSERT_EQ(sa.size(), 1u);
  ASSERT_EQ(sb.size(), 2u);
  ASSERT_EQ(sa.at("x").size(), 100u);
  for (int step = 0; step < 100; ++step) {
    EXPECT_EQ(sa.at("x")[step], std::make_pair(int64_t{step}, step * 0.5));
    EXPECT_EQ(sb.at("y")[step], std::make_pair(int64_t{step}, double(-step)));
    EXPECT_EQ(sb.at("z")[step], std::make_pair(int64_t{step}, double(step * step)));
  }
}

// A flushed file with the version record and two scalar records; `second` is the byte
// offset of the first scalar record.
std::string sample_file(const std::filesystem::path& dir, size_t& second) {
  EventFileWriter w(dir);
  w.add_scalar("loss", 7, 1.0);
  w.add_scalar("loss", 8, 2.0);
  w.flush();
  const std::string bytes = read_file(w.path());
  second = 12 + static_cast<unsigned char>(bytes[0]) + 4;  // version record < 256 bytes
  return bytes;
}

// The InputError message of read_event_file on `bytes`, or "" when it reads.
std::string read_error(const std::filesystem::path& path, const std::string& bytes) {
  write_file(path, bytes);
  try {
    read_event_file(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(EventFile, CorruptionNamesTheOffset) {
  TempDir tmp;
  size_t second = 0;
  const std::string good = sample_file(tmp / "w", second);
  const auto path = tmp / "events.out.tfevents.bad";
  ASSERT_EQ(read_error(path, good), "");
  const std::string at = "at byte offset " + std::to_string(second) + ":";

  std::string bad = good;
  bad[second + 14] ^= 0x01;  // a data byte of the second record
  std::string msg = read_error(path, bad);
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find(at), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad data CRC"), std::string::npos) << msg;

  bad = good;
  bad[second + 1] ^= 0x40;  // its length
  msg = read_error(path, bad);
  EXPECT_NE(msg.find(at), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad length CRC"), std::string::npos) << msg;

  // Cut in the second record's header, after it, in its data, in its data CRC.
  const size_t third = second + 12 + static_cast<unsigned char>(good[second]) + 4;
  for (size_t cut : {second + 5, second + 12, second + 14, third - 1}) {
    msg = read_error(path, good.substr(0, cut));
    EXPECT_NE(msg.find(at), std::string::npos) << "cut at " << cut << ": " << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << "cut at " << cut << ": " << msg;
  }
}

TEST(EventFile, UnparsableEventIsAnError) {
  TempDir tmp;
  // A well-framed record whose data is no Event (field 1 with wire type 7).
  const std::string data = "\x0f";
  std::string rec;
  auto put = [&](uint64_t v, int n) {
    for (int i = 0; i < n; ++i) rec.push_back(static_cast<char>(v >> (8 * i)));
  };
  put(data.size(), 8);
  put(masked_crc32c(rec.data(), 8), 4);
  rec += data;
  put(masked_crc32c(data.data(), data.size()), 4);
  const std::string msg = read_error(tmp / "x.tfevents", rec);
  EXPECT_NE(msg.find("at byte offset 0: unparsable Event"), std::string::npos) << msg;
}

TEST(EventFile, MissingFileIsAnIoError) {
  TempDir tmp;
  EXPECT_THROW(read_event_file(tmp / "none"), IoError);
}

// TensorBoard's own loader reads what the writer wrote (skips without the Python package).
TEST(EventFile, TensorBoardLoadsIt) {
  if (std::system("python3 -c 'import tensorboard' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "the Python package tensorboard is not installed";
  }
  TempDir tmp;
  std::filesystem::path path;
  {
    EventFileWriter w(tmp / "run");
    path = w.path();
    w.add_scalar("train/loss", 0, 10.75);
    w.add_scalars(1, {{"train/loss", 0.1}, {"train/lr", 3e-4}});
    w.add_scalar("train/loss", 2, std::nan(""));
    w.flush();
  }
  // Newer TensorBoards turn simple_value into a scalar tensor while loading.
  write_file(tmp / "load.py", R"(import sys
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util
for event in EventFileLoader(sys.argv[1]).Load():
    if event.HasField("file_version"):
        print("version", event.file_version)
    for v in event.summary.value:
        if v.HasField("simple_value"):
            x = v.simple_value
        else:
            x = tensor_util.make_ndarray(v.tensor).item()
        print(v.tag, event.step, repr(float(x)))
)");
  const std::string cmd = "python3 " + (tmp / "load.py").string() + " " + path.string();
  std::FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << out;

  std::istringstream lines(out);
  std::string first;
  std::getline(lines, first);
  EXPECT_EQ(first, "version brain.Event:2");
  std::vector<std::tuple<std::string, int64_t, std::string>> got;
  for (std::string tag, value; lines >> tag;) {
    int64_t step = 0;
    lines >> step >> value;
    got.emplace_back(tag, step, value);
  }
  ASSERT_EQ(got.size(), 4u) << out;
  const std::vector<std::tuple<std::string, int64_t, double>> want = {
      {"train/loss", 0, 10.75},
      {"train/loss", 1, static_cast<float>(0.1)},
      {"train/lr", 1, static_cast<float>(3e-4)},
      {"train/loss", 2, std::nan("")}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(std::get<0>(got[i]), std::get<0>(want[i])) << out;
    EXPECT_EQ(std::get<1>(got[i]), std::get<1>(want[i])) << out;
    const double value = std::stod(std::get<2>(got[i]));
    const double expected = std::get<2>(want[i]);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(value)) << out;
    } else {
      EXPECT_EQ(value, expected) << out;
    }
  }
}

}  // namespace
}  // namespace peng::tensorboard
