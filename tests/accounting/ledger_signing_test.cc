// Ed25519-signed ledgers (accounting/signing.h): key pairs, records anyone with the public key
// can verify, and each kind of tampering caught naming the record: an edited field, a deleted
// middle record, a swapped pair, a record signed by another key, kinds of seal mixed. Key files
// readable by others are refused; the private key never appears in the ledger.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "peng/accounting/ledger.h"
#include "peng/accounting/signing.h"
#include "peng/core/error.h"
#include "tests/util/test_util.h"

namespace peng::ledger {
namespace {

using nlohmann::json;
using testing::input_error_of;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

json record(int i) {
  return {{"kind", "interval"}, {"job", "peng-1"}, {"job_record", i}, {"tokens", 100 * i}};
}

struct Keys {
  std::filesystem::path priv, pub;
};

Keys make_keys(const TempDir& dir, const std::string& name) {
  write_key_pair((dir / name).string());
  return {dir / (name + ".pem"), dir / (name + ".pub.pem")};
}

std::vector<std::string> lines_of(const std::filesystem::path& p) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(p));
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

std::string text_of(const std::vector<std::string>& lines) {
  std::string t;
  for (const std::string& l : lines) t += l + "\n";
  return t;
}

// A ledger of `n` records signed with `keys`.
std::filesystem::path signed_ledger(const TempDir& dir, const Keys& keys, int n) {
  const std::filesystem::path path = dir / "ledger.jsonl";
  LedgerWriter writer(path, "", std::make_shared<SigningKey>(SigningKey::load(keys.priv)));
  for (int i = 0; i < n; ++i) writer.append(record(i));
  return path;
}

TEST(LedgerSigning, KeyPairFilesAndModes) {
  TempDir dir;
  const Keys k = make_keys(dir, "site");
  struct stat st {};
  ASSERT_EQ(::stat(k.priv.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(k.pub.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_NE(read_file(k.priv).find("BEGIN PRIVATE KEY"), std::string::npos);
  EXPECT_NE(read_file(k.pub).find("BEGIN PUBLIC KEY"), std::string::npos);
  EXPECT_EQ(SigningKey::load(k.priv).key_id(), PublicKey::load(k.pub).key_id());
  const SigningKey key = SigningKey::load(k.priv);
  EXPECT_EQ(key.public_key().key_id(), key.key_id());
  EXPECT_TRUE(PublicKey::load(k.pub).verify("bytes", key.sign_hex("bytes")));
  EXPECT_TRUE(key.public_key().verify("bytes", key.sign_hex("bytes")));
  EXPECT_FALSE(key.public_key().verify("bytez", key.sign_hex("bytes")));
  EXPECT_NE(input_error_of([&] { write_key_pair((dir / "site").string()); }).find("exists"),
            std::string::npos);
}

TEST(LedgerSigning, KeyReadableByOthersIsRefused) {
  TempDir dir;
  const Keys k = make_keys(dir, "site");
  ASSERT_EQ(::chmod(k.priv.c_str(), 0644), 0);
  const std::string e = input_error_of([&] { SigningKey::load(k.priv); });
  EXPECT_NE(e.find("is readable by others (mode 0644): chmod 600"), std::string::npos) << e;
  EXPECT_EQ(e.find("PRIVATE KEY"), std::string::npos) << e;
  const std::string pub_as_priv = input_error_of([&] {
    ASSERT_EQ(::chmod(k.pub.c_str(), 0600), 0);
    SigningKey::load(k.pub);
  });
  EXPECT_NE(pub_as_priv.find("is not an unencrypted Ed25519 private key"), std::string::npos)
      << pub_as_priv;
}

TEST(LedgerSigning, IntactLedgerVerifiesWithThePublicKeyOnly) {
  TempDir dir;
  const Keys k = make_keys(dir, "site");
  const auto path = signed_ledger(dir, k, 4);
  const PublicKey pub = PublicKey::load(k.pub);
  const VerifyResult r = verify(path, "", nullptr, &pub);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.records, 4);
  EXPECT_EQ(r.key_id, pub.key_id());
  const std::string text = read_file(path);
  EXPECT_EQ(text.find("PRIVATE"), std::string::npos);
  EXPECT_EQ(json::parse(lines_of(path)[0])["key_id"], pub.key_id());
}

// Each tampering, the record it is found at and the words naming it.
TEST(LedgerSigning, TamperingIsNamed) {
  TempDir dir;
  const Keys k = make_keys(dir, "site"), other = make_keys(dir, "other");
  const PublicKey pub = PublicKey::load(k.pub);
  const auto check = [&](const std::vector<std::string>& lines, int64_t bad, const char* words) {
    const std::filesystem::path p = dir / "tampered.jsonl";
    write_file(p, text_of(lines));
    const VerifyResult r = verify(p, "", nullptr, &pub);
    EXPECT_FALSE(r.ok) << words;
    EXPECT_EQ(r.first_bad, bad) << r.error;
    EXPECT_NE(r.error.find(words), std::string::npos) << r.error;
  };
  const std::vector<std::string> good = lines_of(signed_ledger(dir, k, 4));

  std::vector<std::string> edited = good;  // the last record: no later prev to break
  json r3 = json::parse(edited[3]);
  r3["tokens"] = 999999;
  edited[3] = r3.dump();
  check(edited, 3, "Ed25519 signature does not match (edited record)");

  std::vector<std::string> deleted = good;
  deleted.erase(deleted.begin() + 1);
  check(deleted, 1, "seq is 2, expected 1");

  std::vector<std::string> swapped = good;
  std::swap(swapped[1], swapped[2]);
  check(swapped, 1, "seq is 2, expected 1");

  // A record signed by another key, chained correctly: whoever holds that key wrote it by
  // hand (peng's writer refuses a second key on a ledger).
  std::vector<std::string> intruded = good;
  const SigningKey intruder = SigningKey::load(other.priv);
  json extra = record(4);
  extra["v"] = 1;
  extra["seq"] = 4;
  extra["prev"] = sha256_hex(good[3]);
  extra["key_id"] = intruder.key_id();
  extra["sig"] = intruder.sign_hex(extra.dump());
  intruded.push_back(extra.dump());
  check(intruded, 4, "signed by another key");
}

TEST(LedgerSigning, SealsNeverMix) {
  TempDir dir;
  const Keys k = make_keys(dir, "site");
  const auto path = signed_ledger(dir, k, 2);
  const std::string hmac = input_error_of([&] { LedgerWriter w(path, "hmac-key"); });
  EXPECT_NE(hmac.find("its records are Ed25519-signed, this job's would be HMAC-signed"),
            std::string::npos)
      << hmac;
  const std::string both = input_error_of([&] {
    LedgerWriter w(dir / "new.jsonl", "hmac-key",
                   std::make_shared<SigningKey>(SigningKey::load(k.priv)));
  });
  EXPECT_NE(both.find("never seal one ledger together"), std::string::npos) << both;
  const Keys other = make_keys(dir, "other");
  const std::string rotated = input_error_of([&] {
    LedgerWriter w(path, "", std::make_shared<SigningKey>(SigningKey::load(other.priv)));
  });
  EXPECT_NE(rotated.find("its records are signed by key " + PublicKey::load(k.pub).key_id() +
                         ", this job's key is " + PublicKey::load(other.pub).key_id()),
            std::string::npos)
      << rotated;
  // A ledger whose records were sealed both ways (written by hand) fails even without keys.
  const std::filesystem::path hmac_path = dir / "hmac.jsonl";
  LedgerWriter(hmac_path, "hmac-key").append(record(0));
  std::vector<std::string> mixed = lines_of(hmac_path);
  json second = record(1);
  second["v"] = 1;
  second["seq"] = 1;
  second["prev"] = sha256_hex(mixed[0]);
  second["key_id"] = "0000000000000000";
  second["sig"] = std::string(128, '0');
  mixed.push_back(second.dump());
  write_file(dir / "mixed.jsonl", text_of(mixed));
  const VerifyResult r = verify(dir / "mixed.jsonl", "");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad, 1);
  EXPECT_NE(r.error.find("the kinds never mix"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace peng::ledger

namespace peng::ledger {
namespace {

// The base64 body of a PEM private key: what must never show up anywhere else.
std::string secret_of(const std::filesystem::path& priv) {
  std::istringstream in(read_file(priv));
  std::string line, body;
  while (std::getline(in, line)) {
    if (!line.starts_with("-----")) body += line;
  }
  return body;
}

// End to end: `peng keygen`, a 2-rank job signing its records, `peng report --verify` with the
// public key (and with another key, and with the key readable by others).
TEST(LedgerSigningJob, TwoRankJobVerifiedWithThePublicKey) {
  TempDir dir;
  testing::CommandResult r = testing::run_peng({"keygen", "--out", (dir / "site").string()});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  const std::string id = PublicKey::load(dir / "site.pub.pem").key_id();
  EXPECT_NE(r.stdout_text.find("key id " + id), std::string::npos) << r.stdout_text;
  ASSERT_EQ(testing::run_peng({"keygen", "--out", (dir / "other").string()}).exit_code, 0);
  const std::string secret = secret_of(dir / "site.pem");
  ASSERT_GT(secret.size(), 40u);

  const testing::ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
  std::vector<std::string> args = {"train"};
  for (const std::string& a : ref.train_args(4)) args.push_back(a);
  const std::string ledger = (dir / "ledger.jsonl").string();
  const std::string key = (dir / "site.pem").string();
  args.insert(args.end(), {"--dp", "2", "--quiet", "--ledger", ledger, "--ledger-signing-key", key,
                           "--ledger-every", "0.001"});
  r = testing::run_mpi_peng(2, args);
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  std::string seen = r.stdout_text + r.stderr_text + read_file(ledger);

  r = testing::run_peng(
      {"report", ledger, "--verify", "--public-key", (dir / "site.pub.pem").string()});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_NE(r.stdout_text.find("Ed25519 signatures checked (key " + id + ")"), std::string::npos)
      << r.stdout_text;
  seen += r.stdout_text + r.stderr_text;

  // The independent check (scripts/verify_ledger.py: Python's standard library and the openssl
  // command line, no peng) agrees, and catches a tail cut off against the head it was given.
  const std::string script = (testing::source_dir() / "scripts/verify_ledger.py").string();
  const std::string pub = (dir / "site.pub.pem").string();
  r = testing::run_command({"python3", script, ledger, "--public-key", pub});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  const std::vector<std::string> lines = lines_of(ledger);
  const std::string head = sha256_hex(lines.back());
  EXPECT_EQ(r.stdout_text, detail::concat("ok: ", lines.size(), " records, head ", head, "\n"));
  write_file(dir / "cut.jsonl", text_of({lines.begin(), lines.end() - 1}));
  r = testing::run_command({"python3", script, (dir / "cut.jsonl").string(), "--public-key", pub,
                            "--head", head, "--records", std::to_string(lines.size())});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("records were cut off at its tail"), std::string::npos)
      << r.stderr_text;
  std::vector<std::string> edited = lines;
  json last = json::parse(edited.back());
  last["tokens"] = last["tokens"].get<int64_t>() + 1;
  edited.back() = last.dump();
  write_file(dir / "edited.jsonl", text_of(edited));
  r = testing::run_command({"python3", script, ledger, "--public-key", pub, "--head", head});
  EXPECT_NE(r.stderr_text.find("--head and --records go together"), std::string::npos)
      << r.stderr_text;
  r = testing::run_command(
      {"python3", script, (dir / "edited.jsonl").string(), "--public-key", pub});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find(detail::concat("record ", lines.size() - 1, " (line ", lines.size(),
                                              "): Ed25519 signature does not match")),
            std::string::npos)
      << r.stderr_text;

  r = testing::run_peng(
      {"report", ledger, "--verify", "--public-key", (dir / "other.pub.pem").string()});
  EXPECT_NE(r.exit_code, 0);
  ASSERT_EQ(testing::error_lines(r.stderr_text).size(), 1u) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("record 0 (line 1): signed by another key"), std::string::npos)
      << r.stderr_text;

  r = testing::run_peng({"report", ledger, "--verify", "--ledger-key",
                         (dir / "site.pub.pem").string(), "--public-key",
                         (dir / "site.pub.pem").string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("never check one ledger together"), std::string::npos)
      << r.stderr_text;

  // A job does not extend a ledger whose signatures fail (an edited last record: the chain
  // alone cannot tell).
  const std::string intact = read_file(ledger);
  write_file(ledger, text_of(edited));
  r = testing::run_mpi_peng(2, args);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("Ed25519 signature does not match (edited record)"),
            std::string::npos)
      << r.stderr_text;
  EXPECT_EQ(read_file(ledger), text_of(edited));  // nothing appended
  write_file(ledger, intact);

  ASSERT_EQ(::chmod((dir / "site.pem").c_str(), 0640), 0);
  r = testing::run_mpi_peng(2, args);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("is readable by others (mode 0640)"), std::string::npos)
      << r.stderr_text;
  seen += r.stdout_text + r.stderr_text;
  EXPECT_EQ(seen.find(secret), std::string::npos) << "the private key leaked";
}

}  // namespace
}  // namespace peng::ledger
