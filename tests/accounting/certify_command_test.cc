// End to end: two training jobs (one on 2 ranks) write an Ed25519-signed ledger each, `peng
// certify` issues a certificate over both, and it verifies with peng and with the independent
// script (scripts/verify_certificate.py: Python's standard library and openssl, no peng);
// both name what is wrong with a ledger cut at its tail, a missing ledger and a changed figure
// signed again. The private key never appears in any output; a key readable by others, an
// existing certificate and an empty period are refused with one `error:` line.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "peng/accounting/certificate.h"
#include "peng/accounting/signing.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::CommandResult;
using testing::read_file;

// A training job on `np` ranks writing the signed ledger `ledger`.
void train(int np, const fs::path& ledger, const fs::path& key, const fs::path& ckpt) {
  const testing::ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
  std::vector<std::string> args = testing::joined({"train"}, ref.train_args(4));
  args = testing::joined(args, {"--quiet", "--ledger", ledger.string(), "--ledger-signing-key",
                                key.string(), "--ledger-every", "0.001", "--checkpoint-dir",
                                ckpt.string(), "--checkpoint-every", "2"});
  if (np > 1) args = testing::joined(args, {"--dp", std::to_string(np)});
  const CommandResult r = np > 1 ? testing::run_mpi_peng(np, args) : testing::run_peng(args);
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
}

// The private key's PEM body: what must never show up anywhere else.
std::string secret_of(const fs::path& priv) {
  std::istringstream in(read_file(priv));
  std::string body;
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("-----")) body += line;
  }
  return body;
}

struct Checked {
  CommandResult peng, script;
};

// `peng certify --verify` and the script on the same certificate and ledgers.
Checked verify_both(const fs::path& cert, const fs::path& pub,
                    const std::vector<std::string>& ledgers) {
  const std::string script = (testing::source_dir() / "scripts/verify_certificate.py").string();
  return {testing::run_peng(testing::joined(
              {"certify", "--verify", cert.string(), "--public-key", pub.string()}, ledgers)),
          testing::run_command(testing::joined(
              {"python3", script, cert.string(), "--public-key", pub.string()}, ledgers))};
}

void expect_both_fail(const Checked& c, const std::string& peng_says,
                      const std::string& script_says) {
  EXPECT_NE(c.peng.exit_code, 0);
  ASSERT_EQ(testing::error_lines(c.peng.stderr_text).size(), 1u) << c.peng.stderr_text;
  EXPECT_NE(c.peng.stderr_text.find(peng_says), std::string::npos) << c.peng.stderr_text;
  EXPECT_NE(c.script.exit_code, 0);
  EXPECT_NE(c.script.stderr_text.find("error: "), std::string::npos) << c.script.stderr_text;
  EXPECT_NE(c.script.stderr_text.find(script_says), std::string::npos) << c.script.stderr_text;
}

TEST(CertifyCommand, TwoJobsCertifiedAndVerifiedWithPengAndTheScript) {
  testing::TempDir dir;
  ASSERT_EQ(testing::run_peng({"keygen", "--out", (dir / "site").string()}).exit_code, 0);
  const fs::path key = dir / "site.pem", pub = dir / "site.pub.pem";
  const std::string a = (dir / "a.jsonl").string(), b = (dir / "b.jsonl").string();
  train(2, a, key, dir / "ck-a");
  train(1, b, key, dir / "ck-b");
  const std::vector<std::string> certify = {
      "certify",    a,         b,        "--contract", "SZ-2026-042", "--supplier", "鹏城算力",
      "--customer", "Acme AI", "--from", "2000-01-01", "--to",        "2100-01-01", "--signing-key",
      key.string()};

  CommandResult r = testing::run_peng(testing::joined(certify, {"--out", (dir / "out").string()}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  const std::string key_id = ledger::PublicKey::load(pub).key_id();
  EXPECT_NE(r.stdout_text.find("certificate SZ-2026-042: 2 jobs, "), std::string::npos)
      << r.stdout_text;
  EXPECT_NE(r.stdout_text.find("energy not measured; signed by key " + key_id), std::string::npos)
      << r.stdout_text;
  std::string seen = r.stdout_text + r.stderr_text;
  const fs::path cert = dir / "out/certificate.json";
  for (const char* file : {"certificate.json", "certificate.csv", "certificate.html"}) {
    ASSERT_TRUE(fs::exists(dir / "out" / file)) << file;
    seen += read_file(dir / "out" / file);
  }
  const json c = json::parse(read_file(cert));
  EXPECT_EQ(c["total"]["jobs"], 2);
  EXPECT_EQ(c["total"]["tokens"], 2 * 4 * 4 * 16);  // 2 jobs x 4 steps x batch 4 x 16 tokens
  EXPECT_EQ(c["jobs"][0]["checkpoint_steps"], json::array({2, 4}));
  EXPECT_EQ(c["ledgers"].size(), 2u);

  Checked ok = verify_both(cert, pub, {a, b});
  ASSERT_EQ(ok.peng.exit_code, 0) << ok.peng.stderr_text;
  EXPECT_NE(ok.peng.stdout_text.find("certificate.json: ok, contract SZ-2026-042, signed by key " +
                                     key_id +
                                     "; 2 ledgers hold every record it covers, every "
                                     "figure recomputed"),
            std::string::npos)
      << ok.peng.stdout_text;
  ASSERT_EQ(ok.script.exit_code, 0) << ok.script.stderr_text;
  EXPECT_NE(ok.script.stdout_text.find("ok: certificate SZ-2026-042 signed by key " + key_id),
            std::string::npos);
  ok = verify_both(cert, pub, {});  // the signature alone
  EXPECT_EQ(ok.peng.exit_code, 0) << ok.peng.stderr_text;
  EXPECT_EQ(ok.script.exit_code, 0) << ok.script.stderr_text;
  seen += ok.peng.stdout_text + ok.peng.stderr_text;

  // A ledger cut at its tail, a covered ledger missing, a changed figure signed again.
  std::string text = read_file(a);
  text.erase(text.rfind('\n', text.size() - 2) + 1);
  testing::write_file(dir / "cut.jsonl", text);
  expect_both_fail(verify_both(cert, pub, {(dir / "cut.jsonl").string(), b}),
                   "records were cut off at its tail", "records were cut off at its tail");
  expect_both_fail(verify_both(cert, pub, {a}), "the certificate covers ledger b.jsonl",
                   "the certificate covers ledger b.jsonl");
  json inflated = c;
  inflated["total"]["device_hours"] = c["total"]["device_hours"].get<double>() * 2;
  certificate::sign(inflated, ledger::SigningKey::load(key));
  testing::write_file(dir / "inflated.json", certificate::to_file(inflated));
  expect_both_fail(verify_both(dir / "inflated.json", pub, {a, b}),
                   "total.device_hours: the certificate says",
                   "total.device_hours: the certificate says");

  // Signed text with a key twice: readers keeping the first or the last value would disagree.
  std::string line = read_file(cert);
  line.pop_back();
  const size_t sig_at = line.find(",\"sig\":\"");
  const std::string sig_member = line.substr(sig_at, 8 + 128 + 1);
  std::string body = line.erase(sig_at, sig_member.size());
  body.insert(body.find("\"total\":{") + 9, "\"tokens\":999999,");
  const std::string resigned_sig = ledger::SigningKey::load(key).sign_hex(body);
  body.insert(body.find(",\"supplier\":"), ",\"sig\":\"" + resigned_sig + "\"");
  testing::write_file(dir / "twice.json", body + "\n");
  expect_both_fail(verify_both(dir / "twice.json", pub, {}), "not in canonical form",
                   "a key appears twice in one object");

  // Refusals: an existing certificate, an empty period, a key readable by others.
  r = testing::run_peng(testing::joined(certify, {"--out", (dir / "out").string()}));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("certificate.json exists: a certificate is never overwritten"),
            std::string::npos)
      << r.stderr_text;
  std::vector<std::string> empty_period = certify;
  empty_period[10] = "1990-01-01";
  empty_period[12] = "1991-01-01";
  r = testing::run_peng(testing::joined(empty_period, {"--out", (dir / "none").string()}));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("no ledger record falls in the period"), std::string::npos)
      << r.stderr_text;
  EXPECT_FALSE(fs::exists(dir / "none/certificate.json"));
  ASSERT_EQ(::chmod(key.c_str(), 0644), 0);
  r = testing::run_peng(testing::joined(certify, {"--out", (dir / "open").string()}));
  EXPECT_NE(r.exit_code, 0);
  ASSERT_EQ(testing::error_lines(r.stderr_text).size(), 1u) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("site.pem"), std::string::npos) << r.stderr_text;
  seen += r.stdout_text + r.stderr_text;

  const std::string secret = secret_of(key);
  ASSERT_GT(secret.size(), 40u);
  EXPECT_EQ(seen.find(secret), std::string::npos);
  EXPECT_EQ(seen.find(secret.substr(0, 24)), std::string::npos);
}

}  // namespace
}  // namespace peng
