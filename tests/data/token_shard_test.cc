// Token shards: the llm.c file format, globbing, the batch rule and its error messages.
#include "peng/core/data/token_shard.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "peng/core/error.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using peng::testing::read_file;
using peng::testing::TempDir;
using peng::testing::write_file;

std::vector<uint32_t> iota_tokens(int64_t n, uint32_t start = 0) {
  std::vector<uint32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), start);
  return v;
}

std::vector<int32_t> read_all(const TokenStream& s, int64_t vocab = kMaxTokenId) {
  std::vector<int32_t> out(size_t(s.size()));
  s.read(0, s.size(), out.data(), vocab);
  return out;
}

// A raw shard file: header fields as given, then `body` bytes.
std::string raw_shard(int32_t magic, int32_t version, int32_t count, const std::string& body) {
  std::vector<int32_t> header(kShardHeaderInts, 0);
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  std::string bytes(reinterpret_cast<const char*>(header.data()), kShardHeaderBytes);
  return bytes + body;
}

// The message of the InputError that f throws (fails the test when it throws nothing else).
template <typename F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected peng::InputError";
  return "";
}

TEST(TokenShard, RoundTripU16) {
  TempDir dir;
  const std::string path = dir / "a.bin";
  std::vector<uint32_t> tokens = iota_tokens(1000);
  tokens.push_back(65535);
  write_token_shard(path, tokens);
  const std::string bytes = read_file(path);
  ASSERT_EQ(bytes.size(), size_t(kShardHeaderBytes + 2 * tokens.size()));
  int32_t header[3];
  std::memcpy(header, bytes.data(), sizeof header);
  EXPECT_EQ(header[0], 20240520);
  EXPECT_EQ(header[1], 1);
  EXPECT_EQ(header[2], int32_t(tokens.size()));

  TokenShard shard(path);
  EXPECT_EQ(shard.size(), int64_t(tokens.size()));
  EXPECT_EQ(shard.token_bytes(), 2);
  TokenStream stream(path);
  EXPECT_EQ(stream.size(), int64_t(tokens.size()));
  EXPECT_EQ(stream.describe(), path);
  const std::vector<int32_t> got = read_all(stream);
  EXPECT_EQ(std::vector<uint32_t>(got.begin(), got.end()), tokens);
}

TEST(TokenShard, RoundTripU32WhenIdsDoNotFit) {
  TempDir dir;
  const std::string path = dir / "wide.bin";
  const std::vector<uint32_t> tokens = {0, 70000, 5, 100000, 65536, uint32_t(INT32_MAX)};
  write_token_shard(path, tokens);
  const std::string bytes = read_file(path);
  ASSERT_EQ(bytes.size(), size_t(kShardHeaderBytes + 4 * tokens.size()));
  int32_t header[3];
  std::memcpy(header, bytes.data(), sizeof header);
  EXPECT_EQ(header[0], 20240801);
  EXPECT_EQ(header[1], 7);
  EXPECT_EQ(header[2], int32_t(tokens.size()));
  TokenStream stream(path);
  EXPECT_EQ(TokenShard(path).token_bytes(), 4);
  const std::vector<int32_t> got = read_all(stream);
  EXPECT_EQ(std::vector<uint32_t>(got.begin(), got.end()), tokens);
}

TEST(TokenShard, WideFlagForcesU32) {
  TempDir dir;
  write_token_shard(dir / "w.bin", {1, 2, 3}, /*wide=*/true);
  TokenShard shard(dir / "w.bin");
  EXPECT_EQ(shard.token_bytes(), 4);
  std::vector<int32_t> out(3);
  shard.read(0, 3, out.data(), 4);
  EXPECT_EQ(out, (std::vector<int32_t>{1, 2, 3}));
}

TEST(TokenShard, EmptyShardIsValid) {
  TempDir dir;
  write_token_shard(dir / "e.bin", {});
  TokenStream stream(dir / "e.bin");
  EXPECT_EQ(stream.size(), 0);
  EXPECT_EQ(stream.sequences_per_epoch(4), 0);
}

TEST(TokenShard, ReadsTheReferenceShard) {
  const fs::path ref = peng::testing::reference_dir() / "gpt2-tiny" / "tokens.bin";
  if (!fs::exists(ref)) GTEST_SKIP() << ref << " not present";
  TokenStream stream(ref.string());
  ASSERT_GT(stream.size(), 0);
  read_all(stream, 256);  // every token of the V=256 case is below 256
}

TEST(TokenStream, GlobConcatenatesShardsInSortedOrder) {
  TempDir dir;
  // Written out of order; the stream must follow name order.
  write_token_shard(dir / "shard_002.bin", iota_tokens(3, 12));
  write_token_shard(dir / "shard_000.bin", iota_tokens(5, 0));
  write_token_shard(dir / "shard_001.bin", iota_tokens(7, 5), /*wide=*/true);  // mixed widths
  write_token_shard(dir / "other.bin", iota_tokens(2, 900));
  const std::string pattern = (dir / "shard_*.bin").string();
  TokenStream stream(pattern);
  ASSERT_EQ(stream.paths().size(), 3u);
  EXPECT_EQ(stream.paths()[0], (dir / "shard_000.bin").string());
  EXPECT_EQ(stream.paths()[2], (dir / "shard_002.bin").string());
  EXPECT_EQ(stream.size(), 15);
  EXPECT_NE(stream.describe().find("3 files"), std::string::npos);
  const std::vector<int32_t> all = read_all(stream);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(all[size_t(i)], i);
  // A read that crosses both shard boundaries.
  std::vector<int32_t> mid(10);
  stream.read(3, 10, mid.data());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(mid[size_t(i)], 3 + i);
}

TEST(TokenStream, GlobSkipsEmptyShards) {
  TempDir dir;
  write_token_shard(dir / "s0.bin", iota_tokens(4, 0));
  write_token_shard(dir / "s1.bin", {});
  write_token_shard(dir / "s2.bin", iota_tokens(4, 4));
  TokenStream stream((dir / "s?.bin").string());
  EXPECT_EQ(stream.size(), 8);
  std::vector<int32_t> out(4);
  stream.read(2, 4, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{2, 3, 4, 5}));
}

TEST(TokenStream, ExistingPathWithGlobCharactersIsLiteral) {
  TempDir dir;
  write_token_shard(dir / "x[1].bin", {7, 8});
  TokenStream stream((dir / "x[1].bin").string());
  EXPECT_EQ(stream.size(), 2);
}

TEST(TokenStream, EmptyGlobNamesThePattern) {
  TempDir dir;
  const std::string pattern = (dir / "nothing_*.bin").string();
  const std::string msg = input_error([&] { TokenStream s(pattern); });
  EXPECT_NE(msg.find(pattern), std::string::npos) << msg;
  EXPECT_NE(msg.find("matches no file"), std::string::npos) << msg;
}

TEST(TokenStream, MissingFileNamesTheFile) {
  TempDir dir;
  const std::string path = dir / "missing.bin";
  const std::string msg = input_error([&] { TokenStream s(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

TEST(TokenShard, BadMagicNamesTheFile) {
  TempDir dir;
  const std::string path = dir / "bad_magic.bin";
  write_file(path, raw_shard(12345, 1, 0, ""));
  const std::string msg = input_error([&] { TokenShard s(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("magic 12345"), std::string::npos) << msg;
}

TEST(TokenShard, BadVersionNamesTheFile) {
  TempDir dir;
  const std::string path = dir / "bad_version.bin";
  write_file(path, raw_shard(kShardMagicU16, 7, 0, ""));
  std::string msg = input_error([&] { TokenShard s(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("version 7"), std::string::npos) << msg;
  write_file(path, raw_shard(kShardMagicU32, 1, 0, ""));
  msg = input_error([&] { TokenShard s(path); });
  EXPECT_NE(msg.find("version 1"), std::string::npos) << msg;
}

TEST(TokenShard, TruncatedNamesExpectedAndActualBytes) {
  TempDir dir;
  const std::string path = dir / "trunc.bin";
  write_file(path, raw_shard(kShardMagicU16, 1, 10, std::string(16, '\0')));  // 8 of 10 tokens
  const std::string msg = input_error([&] { TokenShard s(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1044"), std::string::npos) << msg;  // 1024 + 10 * 2
  EXPECT_NE(msg.find("1040"), std::string::npos) << msg;
}

TEST(TokenShard, TrailingBytesAreAnError) {
  TempDir dir;
  const std::string path = dir / "long.bin";
  write_file(path, raw_shard(kShardMagicU32, 7, 2, std::string(9, '\0')));
  const std::string msg = input_error([&] { TokenShard s(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("1032"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1033"), std::string::npos) << msg;
}

TEST(TokenShard, ShortHeaderAndNegativeCount) {
  TempDir dir;
  const std::string path = dir / "short.bin";
  write_file(path, std::string(100, 'x'));
  std::string msg = input_error([&] { TokenShard s(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("100 bytes"), std::string::npos) << msg;
  write_file(path, raw_shard(kShardMagicU16, 1, -5, ""));
  msg = input_error([&] { TokenShard s(path); });
  EXPECT_NE(msg.find("negative"), std::string::npos) << msg;
}

TEST(TokenShard, TokenAtOrAboveVocabNamesFilePositionIdAndVocab) {
  TempDir dir;
  write_token_shard(dir / "s0.bin", {1, 2, 3});
  write_token_shard(dir / "s1.bin", {4, 255, 256, 7});
  TokenStream stream((dir / "s*.bin").string());
  std::vector<int32_t> out(7);
  stream.read(0, 7, out.data(), 257);  // fine with a larger vocab
  const std::string msg = input_error([&] { stream.read(0, 7, out.data(), 256); });
  EXPECT_NE(msg.find((dir / "s1.bin").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("position 2"), std::string::npos) << msg;  // within s1.bin
  EXPECT_NE(msg.find("id 256"), std::string::npos) << msg;
  EXPECT_NE(msg.find("vocab size 256"), std::string::npos) << msg;
  // The batch helper checks too.
  std::vector<int32_t> x(2), y(2);
  EXPECT_THROW(stream.read_batch(0, 0, 1, 1, 2, x.data(), y.data(), 3), InputError);
  stream.read_batch(0, 0, 1, 1, 2, x.data(), y.data(), 4);  // reads tokens 1, 2, 3 only
}

TEST(TokenStream, ReadOutsideTheStreamThrows) {
  TempDir dir;
  write_token_shard(dir / "a.bin", iota_tokens(10));
  TokenStream stream(dir / "a.bin");
  std::vector<int32_t> out(4);
  EXPECT_THROW(stream.read(8, 4, out.data()), InputError);
  EXPECT_THROW(stream.read(-1, 1, out.data()), InputError);
}

// x/y rows of the plain batch rule, computed independently.
void expect_plain_rule(const std::vector<int32_t>& x, const std::vector<int32_t>& y, int64_t step,
                       int64_t first, int64_t n, int64_t B, int64_t T) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = step * B + first + i;
    for (int64_t t = 0; t < T; ++t) {
      EXPECT_EQ(x[size_t(i * T + t)], g * T + t) << "seq " << i << " t " << t;
      EXPECT_EQ(y[size_t(i * T + t)], g * T + t + 1) << "seq " << i << " t " << t;
    }
  }
}

TEST(TokenStream, BatchRule) {
  TempDir dir;
  write_token_shard(dir / "a.bin", iota_tokens(1000));  // token i has id i
  TokenStream stream(dir / "a.bin");
  const int64_t B = 3, T = 4;
  std::vector<int32_t> x(static_cast<size_t>(B * T)), y(static_cast<size_t>(B * T));
  for (int64_t step : {0, 1, 2, 7}) {
    stream.read_batch(step, 0, B, B, T, x.data(), y.data(), 1000);
    expect_plain_rule(x, y, step, 0, B, B, T);
  }
  // A DP rank's slice is the same sequences as the global batch's rows.
  stream.read_batch(2, 1, 2, B, T, x.data(), y.data(), 1000);
  expect_plain_rule(x, y, 2, 1, 2, B, T);
}

TEST(TokenStream, BatchRuleAcrossShardBoundaries) {
  TempDir dir;
  for (int k = 0; k < 4; ++k) {
    write_token_shard(dir / ("part_" + std::to_string(k) + ".bin"), iota_tokens(10, 10 * k));
  }
  TokenStream stream((dir / "part_*.bin").string());
  ASSERT_EQ(stream.size(), 40);
  const int64_t B = 2, T = 7;  // sequences start at 0, 7, 14, 21, 28: most straddle shards
  std::vector<int32_t> x(static_cast<size_t>(B * T)), y(static_cast<size_t>(B * T));
  for (int64_t step = 0; step < 2; ++step) {
    stream.read_batch(step, 0, B, B, T, x.data(), y.data(), 40);
    expect_plain_rule(x, y, step, 0, B, B, T);
  }
}

TEST(TokenStream, BatchRuleWrapsAroundAtTheEndOfTheStream) {
  TempDir dir;
  write_token_shard(dir / "a.bin", iota_tokens(23));
  TokenStream stream(dir / "a.bin");
  const int64_t T = 5;
  ASSERT_EQ(stream.sequences_per_epoch(T), 4);  // (23 - 1) / 5
  std::vector<int32_t> x(static_cast<size_t>(T)), y(static_cast<size_t>(T));
  // Sequence g reads at (g mod 4) * 5.
  for (int64_t g = 0; g < 12; ++g) {
    stream.read_batch(g, 0, 1, 1, T, x.data(), y.data(), 23);
    const int64_t o = (g % 4) * T;
    for (int64_t t = 0; t < T; ++t) {
      EXPECT_EQ(x[size_t(t)], o + t) << "g " << g;
      EXPECT_EQ(y[size_t(t)], o + t + 1) << "g " << g;
    }
  }
  // Huge step numbers do not overflow: g = 10^15 * 10^6 + 3, and 10^21 + 3 = 3 (mod 4).
  stream.read_batch(1000000000000000LL, 3, 1, 1000000, T, x.data(), y.data(), 23);
  EXPECT_EQ(x[0], 15);
}

TEST(TokenStream, LastSequenceOfAnEpochUsesTheLastToken) {
  TempDir dir;
  write_token_shard(dir / "a.bin", iota_tokens(13));  // E = 3 for T = 4: exactly 3*4 + 1 tokens
  TokenStream stream(dir / "a.bin");
  std::vector<int32_t> x(4), y(4);
  stream.read_batch(0, 2, 1, 3, 4, x.data(), y.data(), 13);
  EXPECT_EQ(x, (std::vector<int32_t>{8, 9, 10, 11}));
  EXPECT_EQ(y, (std::vector<int32_t>{9, 10, 11, 12}));
  stream.read_batch(1, 0, 1, 3, 4, x.data(), y.data(), 13);  // g = 3 wraps to 0
  EXPECT_EQ(x, (std::vector<int32_t>{0, 1, 2, 3}));
}

TEST(TokenStream, TooShortForOneSequenceNamesTheFile) {
  TempDir dir;
  const std::string path = dir / "tiny.bin";
  write_token_shard(path, iota_tokens(4));
  TokenStream stream(path);
  std::vector<int32_t> x(4), y(4);
  const std::string msg =
      input_error([&] { stream.read_batch(0, 0, 1, 1, 4, x.data(), y.data(), 10); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("4 tokens"), std::string::npos) << msg;
  stream.read_batch(0, 0, 1, 1, 3, x.data(), y.data(), 10);  // T = 3 fits
}

TEST(TokenStream, BatchArgumentsAreChecked) {
  TempDir dir;
  write_token_shard(dir / "a.bin", iota_tokens(100));
  TokenStream stream(dir / "a.bin");
  std::vector<int32_t> x(40), y(40);
  EXPECT_THROW(stream.read_batch(0, 3, 2, 4, 4, x.data(), y.data(), 100), InputError);
  EXPECT_THROW(stream.read_batch(0, 0, 1, 0, 4, x.data(), y.data(), 100), InputError);
  EXPECT_THROW(stream.read_batch(0, 0, 1, 1, 0, x.data(), y.data(), 100), InputError);
  EXPECT_THROW(stream.read_batch(-1, 0, 1, 1, 4, x.data(), y.data(), 100), InputError);
}

TEST(TokenShard, WriterReportsUnwritablePath) {
  TempDir dir;
  const std::string path = dir / "no_such_dir" / "a.bin";
  try {
    write_token_shard(path, {1, 2});
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_dir"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace peng
