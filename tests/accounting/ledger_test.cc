// The usage ledger: hash chain, HMAC, tamper detection, torn lines, concurrent appends.
#include "peng/accounting/ledger.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "peng/core/error.h"
#include "tests/util/test_util.h"

namespace peng::ledger {
namespace {

using nlohmann::json;
using peng::testing::read_file;
using peng::testing::TempDir;
using peng::testing::write_file;

const std::string kKey = "ledger-test-key";
const std::string kZeros(64, '0');

json sample(int i) {
  return {{"kind", "interval"},
          {"job", "peng-00ab"},
          {"job_record", i},
          {"hosts", {"node-1", "node-2"}},
          {"time", "2025-01-02T03:04:05Z"},
          {"tokens", 1000 * (i + 1)},
          {"wall_s", 1.5 * i},
          {"status", "running"}};
}

// Appends `n` sample records; the lines append() returned.
std::vector<std::string> write_ledger(const std::filesystem::path& path, const std::string& key,
                                      int n) {
  LedgerWriter writer(path, key);
  std::vector<std::string> lines;
  for (int i = 0; i < n; ++i) lines.push_back(writer.append(sample(i)));
  return lines;
}

// The lines of a file, a torn last line (no final '\n') included.
std::vector<std::string> lines_of(const std::filesystem::path& path) {
  std::vector<std::string> lines;
  const std::string text = read_file(path);
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(text.substr(start, nl - start));
  }
  if (start < text.size()) lines.push_back(text.substr(start));
  return lines;
}

std::string text_of(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + '\n';
  return text;
}

void write_lines(const std::filesystem::path& path, const std::vector<std::string>& lines) {
  write_file(path, text_of(lines));
}

// EXPECTs verify() to stop at line `first_bad` with an error containing `phrase`, having
// accepted the lines before it.
void expect_bad(const std::filesystem::path& path, const std::string& key, int64_t first_bad,
                const std::string& phrase) {
  const VerifyResult r = verify(path, key);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad, first_bad);
  EXPECT_NE(r.error.find(phrase), std::string::npos) << r.error;
  EXPECT_EQ(r.records, first_bad);
  const std::vector<std::string> lines = lines_of(path);
  EXPECT_EQ(r.head, first_bad == 0 ? kZeros : sha256_hex(lines.at(size_t(first_bad - 1))));
  EXPECT_EQ(r.hmac_checked, !key.empty());
}

template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no exception thrown";
  return "";
}

// `line` as another JSON writer might print it: a space after every ':' and ','.
std::string with_spaces(const std::string& line) {
  std::string out;
  bool in_string = false, escaped = false;
  for (char c : line) {
    out += c;
    if (in_string) {
      in_string = escaped || c != '"';
      escaped = !escaped && c == '\\';
    } else if (c == '"') {
      in_string = true;
    } else if (c == ':' || c == ',') {
      out += ' ';
    }
  }
  return out;
}

TEST(LedgerHash, Sha256KnownAnswers) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(LedgerHash, HmacSha256Rfc4231) {
  // RFC 4231 test case 2.
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Ledger, EmptyLedgerVerifies) {
  TempDir dir;
  LedgerWriter writer(dir / "ledger.jsonl", kKey);  // creates the file
  const VerifyResult r = verify(dir / "ledger.jsonl", kKey);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.records, 0);
  EXPECT_EQ(r.head, kZeros);
  EXPECT_EQ(r.first_bad, -1);
  EXPECT_TRUE(read_verified(dir / "ledger.jsonl", kKey).empty());
}

TEST(Ledger, IntactLedgerWithKeyVerifies) {
  TempDir dir;
  const std::vector<std::string> lines = write_ledger(dir / "l.jsonl", kKey, 5);
  EXPECT_EQ(read_file(dir / "l.jsonl"), text_of(lines));
  std::string prev = kZeros;
  for (size_t i = 0; i < lines.size(); ++i) {
    const json record = json::parse(lines[i]);
    EXPECT_EQ(record["v"], 1);
    EXPECT_EQ(record["seq"], i);
    EXPECT_EQ(record["prev"], prev);
    EXPECT_EQ(record["tokens"], 1000 * (i + 1));
    json body = record;
    body.erase("hmac");
    EXPECT_EQ(record["hmac"], hmac_sha256_hex(kKey, body.dump()));
    prev = sha256_hex(lines[i]);
  }
  const VerifyResult r = verify(dir / "l.jsonl", kKey);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.records, 5);
  EXPECT_EQ(r.head, sha256_hex(lines.back()));
  EXPECT_EQ(r.first_bad, -1);
  EXPECT_TRUE(r.hmac_checked);
  // Without the key only the chain is checked.
  const VerifyResult unkeyed = verify(dir / "l.jsonl", "");
  EXPECT_TRUE(unkeyed.ok);
  EXPECT_FALSE(unkeyed.hmac_checked);
  EXPECT_EQ(unkeyed.head, r.head);
}

TEST(Ledger, IntactLedgerWithoutKeyVerifies) {
  TempDir dir;
  const std::vector<std::string> lines = write_ledger(dir / "l.jsonl", "", 4);
  for (const std::string& line : lines) EXPECT_FALSE(json::parse(line).contains("hmac"));
  const VerifyResult r = verify(dir / "l.jsonl", "");
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.records, 4);
  EXPECT_EQ(r.head, sha256_hex(lines.back()));
  // A key demands an HMAC on every record.
  expect_bad(dir / "l.jsonl", kKey, 0, "record has no hmac but a key was given");
}

TEST(Ledger, AppendSetsChainFieldsOverCallers) {
  TempDir dir;
  LedgerWriter writer(dir / "l.jsonl", kKey);
  json record = sample(0);
  record["v"] = 7;
  record["seq"] = 42;
  record["prev"] = "forged";
  record["hmac"] = "forged";
  const json written = json::parse(writer.append(record));
  EXPECT_EQ(written["v"], 1);
  EXPECT_EQ(written["seq"], 0);
  EXPECT_EQ(written["prev"], kZeros);
  EXPECT_NE(written["hmac"], "forged");
  EXPECT_TRUE(verify(dir / "l.jsonl", kKey).ok);
}

TEST(Ledger, InvalidUtf8IsReplacedNotFatal) {
  // An error message carrying stray bytes still makes a verifiable record.
  TempDir dir;
  LedgerWriter writer(dir / "l.jsonl", kKey);
  json record = sample(0);
  record["status"] = "failed: bad byte \xff here";
  const std::string line = writer.append(record);
  EXPECT_EQ(json::parse(line)["status"], "failed: bad byte \xef\xbf\xbd here");  // U+FFFD
  EXPECT_TRUE(verify(dir / "l.jsonl", kKey).ok);
}

TEST(Ledger, SecondWriterContinuesTheChain) {
  TempDir dir;
  const std::vector<std::string> first = write_ledger(dir / "l.jsonl", kKey, 3);
  LedgerWriter a(dir / "l.jsonl", kKey);
  LedgerWriter b(dir / "l.jsonl", kKey);
  const std::string line3 = a.append(sample(3));
  const std::string line4 = b.append(sample(4));
  const std::string line5 = a.append(sample(5));
  EXPECT_EQ(json::parse(line3)["seq"], 3);
  EXPECT_EQ(json::parse(line3)["prev"], sha256_hex(first.back()));
  EXPECT_EQ(json::parse(line4)["seq"], 4);
  EXPECT_EQ(json::parse(line4)["prev"], sha256_hex(line3));
  EXPECT_EQ(json::parse(line5)["seq"], 5);
  EXPECT_EQ(json::parse(line5)["prev"], sha256_hex(line4));
  const VerifyResult r = verify(dir / "l.jsonl", kKey);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.records, 6);
  EXPECT_EQ(r.head, sha256_hex(line5));
}

TEST(Ledger, RecordsLongerThanAReadChunk) {
  // The writer finds the last line by reading backwards in chunks of 4 KiB.
  TempDir dir;
  const std::filesystem::path path = dir / "l.jsonl";
  std::vector<std::string> lines;
  for (size_t size : {10000, 3, 4095, 8192, 1}) {
    LedgerWriter writer(path, kKey);
    json record = sample(int(lines.size()));
    record["status"] = "failed: " + std::string(size, 'x');
    lines.push_back(writer.append(record));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    EXPECT_EQ(json::parse(lines[i])["seq"], i);
    EXPECT_EQ(json::parse(lines[i])["prev"], sha256_hex(lines[i - 1]));
  }
  const VerifyResult r = verify(path, kKey);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.records, 5);
}

// A keyed ledger of 6 records, then `edit` applied to its lines.
class LedgerTamper : public ::testing::Test {
 protected:
  void SetUp() override { lines_ = write_ledger(path_, kKey, 6); }
  TempDir dir_;
  std::filesystem::path path_ = dir_ / "ledger.jsonl";
  std::vector<std::string> lines_;
};

TEST_F(LedgerTamper, EditedField) {
  const std::string from = "\"tokens\":4000", to = "\"tokens\":4001";
  ASSERT_NE(lines_[3].find(from), std::string::npos);
  lines_[3].replace(lines_[3].find(from), from.size(), to);
  write_lines(path_, lines_);
  expect_bad(path_, kKey, 3, "hmac does not match (edited record or wrong key)");
  // Without the key the edited line itself passes; the next line's prev exposes it.
  expect_bad(path_, "", 4, "prev does not match the hash of line 4");
}

TEST_F(LedgerTamper, DeletedMiddleLine) {
  lines_.erase(lines_.begin() + 2);
  write_lines(path_, lines_);
  expect_bad(path_, kKey, 2, "seq is 3, expected 2");
  expect_bad(path_, "", 2, "seq is 3, expected 2");
}

TEST_F(LedgerTamper, DeletedFirstLine) {
  lines_.erase(lines_.begin());
  write_lines(path_, lines_);
  expect_bad(path_, kKey, 0, "seq is 1, expected 0");
}

TEST_F(LedgerTamper, SwappedLines) {
  std::swap(lines_[2], lines_[3]);
  write_lines(path_, lines_);
  expect_bad(path_, kKey, 2, "seq is 3, expected 2");
}

TEST_F(LedgerTamper, InsertedCopyOfARecord) {
  lines_.insert(lines_.begin() + 4, lines_[1]);
  write_lines(path_, lines_);
  expect_bad(path_, kKey, 4, "seq is 1, expected 4");
}

TEST_F(LedgerTamper, RenumberedLineBreaksThePrevChain) {
  // A record moved and renumbered (no key: nothing else stops it) still fails on prev.
  std::swap(lines_[2], lines_[3]);
  for (int i : {2, 3}) {
    json record = json::parse(lines_[size_t(i)]);
    record["seq"] = i;
    record.erase("hmac");
    lines_[size_t(i)] = record.dump();
  }
  write_lines(path_, lines_);
  expect_bad(path_, "", 2, "prev does not match the hash of line 2");
}

TEST_F(LedgerTamper, WrongKey) {
  expect_bad(path_, "another-key", 0, "hmac does not match (edited record or wrong key)");
}

TEST_F(LedgerTamper, RecordWithoutHmac) {
  json record = json::parse(lines_[2]);
  record.erase("hmac");
  lines_[2] = record.dump();
  write_lines(path_, lines_);
  expect_bad(path_, kKey, 2, "record has no hmac but a key was given");
}

TEST_F(LedgerTamper, NonCanonicalLine) {
  const std::string canonical = lines_[1];
  lines_[1] = with_spaces(canonical);
  ASSERT_NE(lines_[1], canonical);
  ASSERT_EQ(json::parse(lines_[1]).dump(), canonical);  // the same record, spaced out
  write_lines(path_, lines_);
  expect_bad(path_, kKey, 1, "not in canonical form");
}

TEST_F(LedgerTamper, NotJson) {
  lines_[5] = "{\"seq\":5,";
  write_lines(path_, lines_);
  expect_bad(path_, kKey, 5, "not valid JSON");
}

TEST_F(LedgerTamper, TornLastLine) {
  write_file(path_, read_file(path_) + lines_[0].substr(0, lines_[0].size() / 2));
  expect_bad(path_, kKey, 6, "no final newline");
}

TEST_F(LedgerTamper, CompleteLastLineWithoutNewline) {
  const std::string text = read_file(path_);
  write_file(path_, text.substr(0, text.size() - 1));
  expect_bad(path_, kKey, 5, "no final newline");
}

TEST_F(LedgerTamper, RecomputedChainNeedsTheKey) {
  // An attacker edits record 2 and recomputes prev of every later record, but cannot
  // recompute their HMACs without the key.
  std::string prev = sha256_hex(lines_[1]);
  for (size_t i = 2; i < lines_.size(); ++i) {
    json record = json::parse(lines_[i]);
    if (i == 2) record["tokens"] = 999999;
    record["prev"] = prev;
    lines_[i] = record.dump();
    prev = sha256_hex(lines_[i]);
  }
  write_lines(path_, lines_);
  // Documented limitation: without the key a recomputed chain is indistinguishable from
  // an intact one (only a copy of `head` kept elsewhere would show the change).
  const VerifyResult unkeyed = verify(path_, "");
  EXPECT_TRUE(unkeyed.ok) << unkeyed.error;
  EXPECT_EQ(unkeyed.records, 6);
  expect_bad(path_, kKey, 2, "hmac does not match");
}

TEST(Ledger, WriterRefusesATornLedger) {
  TempDir dir;
  const std::filesystem::path path = dir / "l.jsonl";
  const std::vector<std::string> lines = write_ledger(path, kKey, 3);
  write_file(path, read_file(path) + "{\"kind\":\"interval\",\"seq\":3,\"v");
  const std::string torn = error_of<InputError>([&] { LedgerWriter writer(path, kKey); });
  EXPECT_NE(torn.find("ledger " + path.string() + ": the last line is not a complete record"),
            std::string::npos)
      << torn;
  EXPECT_NE(torn.find("(line 4"), std::string::npos) << torn;

  // A complete line that is not a record is refused too.
  write_lines(path, {lines[0], lines[1], lines[2], "not a record"});
  const std::string garbage = error_of<InputError>([&] { LedgerWriter writer(path, kKey); });
  EXPECT_NE(garbage.find("(line 4"), std::string::npos) << garbage;
  EXPECT_NE(garbage.find(path.string()), std::string::npos) << garbage;
  EXPECT_EQ(lines_of(path).size(), 4u);  // nothing was appended
}

// Signed and unsigned records in one ledger would make it fail verification either way.
TEST(Ledger, WriterRefusesToMixSignedAndUnsignedRecords) {
  TempDir dir;
  const std::filesystem::path signed_path = dir / "signed.jsonl";
  write_ledger(signed_path, kKey, 2);
  const std::string no_key = error_of<InputError>([&] { LedgerWriter writer(signed_path, ""); });
  EXPECT_NE(no_key.find("its records are HMAC-signed, this job's would be unsigned; the kinds "
                        "never mix: pass its --ledger-key"),
            std::string::npos)
      << no_key;
  const std::filesystem::path plain_path = dir / "plain.jsonl";
  write_ledger(plain_path, "", 2);
  const std::string key = error_of<InputError>([&] { LedgerWriter writer(plain_path, kKey); });
  EXPECT_NE(key.find("its records are unsigned, this job's would be HMAC-signed"),
            std::string::npos)
      << key;
  EXPECT_EQ(lines_of(signed_path).size(), 2u);
  EXPECT_EQ(lines_of(plain_path).size(), 2u);
  EXPECT_TRUE(verify(signed_path, kKey).ok);
}

TEST(Ledger, AppendRefusesALedgerTornMeanwhile) {
  TempDir dir;
  const std::filesystem::path path = dir / "l.jsonl";
  LedgerWriter writer(path, "");
  writer.append(sample(0));
  write_file(path, read_file(path) + "{\"seq\":1");
  const std::string msg = error_of<InputError>([&] { writer.append(sample(1)); });
  EXPECT_NE(msg.find("(line 2"), std::string::npos) << msg;
}

TEST(Ledger, WriterReportsAnUnopenablePath) {
  TempDir dir;
  const std::string msg =
      error_of<IoError>([&] { LedgerWriter writer(dir / "missing-dir" / "l.jsonl", ""); });
  EXPECT_NE(msg.find("missing-dir"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
}

TEST(Ledger, ConcurrentProcessesKeepTheChain) {
  TempDir dir;
  const std::filesystem::path path = dir / "l.jsonl";
  constexpr int kWriters = 2, kPerWriter = 50;
  std::vector<pid_t> children;
  for (int w = 0; w < kWriters; ++w) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 0;
      try {
        LedgerWriter writer(path, kKey);  // each process opens its own (its own lock)
        for (int k = 0; k < kPerWriter; ++k) writer.append({{"writer", w}, {"n", k}});
      } catch (...) {
        code = 1;
      }
      _exit(code);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  const VerifyResult r = verify(path, kKey);
  EXPECT_TRUE(r.ok) << r.error << " at " << r.first_bad;
  EXPECT_EQ(r.records, kWriters * kPerWriter);
  const std::vector<json> records = read_verified(path, kKey);
  ASSERT_EQ(records.size(), size_t(kWriters * kPerWriter));
  std::vector<int> next(kWriters, 0);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i]["seq"], i);
    const int w = records[i]["writer"];
    EXPECT_EQ(records[i]["n"], next[size_t(w)]++);  // each writer's records in its order
  }
  EXPECT_EQ(next, std::vector<int>(kWriters, kPerWriter));
}

TEST(Ledger, ReadVerifiedReturnsRecordsOrNamesTheLine) {
  TempDir dir;
  const std::filesystem::path path = dir / "l.jsonl";
  std::vector<std::string> lines = write_ledger(path, kKey, 4);
  const std::vector<json> records = read_verified(path, kKey);
  ASSERT_EQ(records.size(), 4u);
  for (size_t i = 0; i < records.size(); ++i) EXPECT_EQ(records[i].dump(), lines[i]);

  lines.erase(lines.begin() + 2);
  write_lines(path, lines);
  const std::string msg = error_of<InputError>([&] { read_verified(path, kKey); });
  EXPECT_EQ(msg, "ledger " + path.string() +
                     ": record 2 (line 3): seq is 3, expected 2 (deleted, inserted or reordered "
                     "record)");
}

TEST(Ledger, VerifyReportsAMissingFile) {
  TempDir dir;
  const std::string msg = error_of<IoError>([&] { verify(dir / "none.jsonl", ""); });
  EXPECT_NE(msg.find("none.jsonl"), std::string::npos) << msg;
}

TEST(LedgerKeyFile, StripsTrailingWhitespace) {
  TempDir dir;
  write_file(dir / "key", "s3cret\n");
  EXPECT_EQ(read_key_file(dir / "key"), "s3cret");
  write_file(dir / "key2", "  two words \r\n\t \n");
  EXPECT_EQ(read_key_file(dir / "key2"), "  two words");
}

TEST(LedgerKeyFile, EmptyOrMissingIsAnError) {
  TempDir dir;
  write_file(dir / "empty", "");
  EXPECT_EQ(error_of<InputError>([&] { read_key_file(dir / "empty"); }),
            "ledger key file " + (dir / "empty").string() + " is empty");
  write_file(dir / "blank", " \n\n");
  EXPECT_EQ(error_of<InputError>([&] { read_key_file(dir / "blank"); }),
            "ledger key file " + (dir / "blank").string() + " is empty");
  const std::string missing = error_of<IoError>([&] { read_key_file(dir / "none"); });
  EXPECT_NE(missing.find("No such file or directory"), std::string::npos) << missing;
}

}  // namespace
}  // namespace peng::ledger
