// Delivery certificates (accounting/certificate.h): the figures of a certificate over signed
// ledgers, its signature, and each way a certificate or its ledgers can be wrong, named: an
// edited certificate, a changed figure signed again, a tail cut off, a ledger rewritten or
// missing, a ledger it does not cover, another key; requests refused with an `error:`. The
// printable page: both languages, escaped, and rendered by headless Chromium.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "peng/accounting/certificate.h"
#include "peng/accounting/certificate_html.h"
#include "peng/accounting/ledger.h"
#include "peng/accounting/signing.h"
#include "peng/launch/commands/report_command.h"
#include "tests/util/test_util.h"

namespace peng::certificate {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::input_error_of;
using testing::TempDir;

constexpr double kH100 = 9.89e14;

// Record `n` (1-based, cumulative) of a job: one hour of wall time per record.
json record(const std::string& job, const std::string& device, int devices, int n,
            const std::string& time, bool metered) {
  const double wall = 3600.0 * n;
  return {{"kind", "interval"},
          {"job", job},
          {"job_record", n - 1},
          {"project", "llm"},
          {"user", "alice"},
          {"hosts", {"node1"}},
          {"device", device},
          {"devices", devices},
          {"start", "2025-03-01T00:00:00Z"},
          {"time", time},
          {"config_hash", std::string(64, job.back())},
          {"checkpoint_dir", ""},
          {"status", "running"},
          {"wall_s", wall},
          {"device_seconds", wall * devices},
          {"productive_s", wall * 0.75},
          {"steps", 10 * n},
          {"step", 10 * n},
          {"tokens", 1000 * n},
          {"model_flops", 1e18 * n},
          {"peak_flops", device == "cpu: test" ? 1e11 : kH100},
          {"peak_source", device == "cpu: test" ? "sgemm probe" : "table: H100 SXM (bf16 dense)"},
          {"mfu", 0.4},
          {"energy_j", metered ? json(4.2e6 * n) : json(nullptr)},
          {"checkpoint_steps", json::array({10 * n})},
          {"loss", 3.0}};
}

struct Fixture {
  TempDir dir;
  fs::path priv = dir / "site.pem", pub = dir / "site.pub.pem";
  std::shared_ptr<ledger::SigningKey> key;

  Fixture() {
    ledger::write_key_pair((dir / "site").string());
    key = std::make_shared<ledger::SigningKey>(ledger::SigningKey::load(priv));
  }

  // Ledger A: job slurm-1 on 8 H100s (metered), three records in March and one in April.
  fs::path ledger_a(const std::string& name = "a.jsonl", int march_records = 3) {
    ledger::LedgerWriter w(dir / name, "", key);
    for (int n = 1; n <= march_records; ++n) {
      w.append(record("slurm-1", "NVIDIA H100 80GB HBM3", 8, n,
                      "2025-03-0" + std::to_string(n) + "T12:00:00Z", true));
    }
    w.append(record("slurm-1", "NVIDIA H100 80GB HBM3", 8, march_records + 1,
                    "2025-04-02T12:00:00Z", true));
    return dir / name;
  }

  // Ledger B: job peng-2 on 2 CPU ranks (no meter), two records in March.
  fs::path ledger_b() {
    ledger::LedgerWriter w(dir / "b.jsonl", "", key);
    for (int n = 1; n <= 2; ++n) {
      w.append(record("peng-2", "cpu: test", 2, n, "2025-03-1" + std::to_string(n) + "T00:00:00Z",
                      false));
    }
    return dir / "b.jsonl";
  }

  report::Ledger load(const fs::path& p) {
    const ledger::PublicKey k = key->public_key();
    report::Ledger l = load_ledger(p.string(), "", true, &k);
    l.path = p.filename().string();
    return l;
  }

  Request march() const {
    return {.contract = "SZ-2025-07",
            .supplier = "鹏城 Compute",
            .customer = "Acme <AI>",
            .project = std::nullopt,
            .from = report::parse_time("2025-03-01", "from"),
            .to = report::parse_time("2025-04-01", "to"),
            .issued = "2025-04-05T09:00:00Z"};
  }

  // The signed certificate over `ledgers`, written to cert.json.
  json issue(const std::vector<fs::path>& ledgers) {
    std::vector<report::Ledger> loaded;
    for (const fs::path& p : ledgers) loaded.push_back(load(p));
    json cert = build(march(), std::move(loaded));
    sign(cert, *key);
    testing::write_file(dir / "cert.json", to_file(cert));
    return cert;
  }

  // check_against_ledgers over the ledger files `paths` (error message, "" when it passes).
  std::string check(const json& cert, const std::vector<fs::path>& paths) {
    return input_error_of([&] {
      std::vector<report::Ledger> loaded;
      for (const fs::path& p : paths) {
        const ledger::PublicKey k = key->public_key();
        loaded.push_back(load_ledger(p.string(), "", true, &k));
      }
      check_against_ledgers(cert, std::move(loaded));
    });
  }
};

std::vector<std::string> lines_of(const fs::path& p) {
  std::vector<std::string> lines;
  std::istringstream in(testing::read_file(p));
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST(Certificate, FiguresOverTheSignedLedgers) {
  Fixture f;
  const fs::path a = f.ledger_a(), b = f.ledger_b();
  const json cert = f.issue({a, b});

  EXPECT_EQ(cert["format"], kFormat);
  EXPECT_EQ(cert["key_id"], f.key->key_id());
  EXPECT_EQ(cert["period"],
            json({{"from", "2025-03-01T00:00:00Z"}, {"to", "2025-04-01T00:00:00Z"}}));
  // The H100 job: 3 hours x 8 devices in March (its April record is outside the period).
  ASSERT_EQ(cert["devices"].size(), 2u);
  const json& h100 = cert["devices"][0];
  EXPECT_EQ(h100["key"], "NVIDIA H100 80GB HBM3");
  EXPECT_DOUBLE_EQ(h100["device_hours"].get<double>(), 24.0);
  EXPECT_DOUBLE_EQ(h100["pflops_hours"].get<double>(), 24.0 * 0.989);
  const json peaks = json::array({{{"source", "table: H100 SXM (bf16 dense)"}, {"tflops", 989.0}}});
  EXPECT_EQ(h100["peaks"], peaks);
  EXPECT_DOUBLE_EQ(h100["energy_kwh"].get<double>(), 3 * 4.2e6 / 3.6e6);
  EXPECT_EQ(h100["energy"], "measured");
  EXPECT_EQ(h100["tokens"], 3000);
  // The CPU job has no meter: its energy, and so the total's, is "not measured".
  const json& cpu = cert["devices"][1];
  EXPECT_EQ(cpu["key"], "cpu: test");
  EXPECT_DOUBLE_EQ(cpu["device_hours"].get<double>(), 4.0);
  EXPECT_TRUE(cpu["energy_kwh"].is_null());
  EXPECT_EQ(cpu["energy"], "not measured");
  const json& total = cert["total"];
  EXPECT_EQ(total["jobs"], 2);
  EXPECT_DOUBLE_EQ(total["device_hours"].get<double>(), 28.0);
  EXPECT_DOUBLE_EQ(total["pflops_hours"].get<double>(), 24.0 * 0.989 + 4.0 * 1e-4);
  EXPECT_DOUBLE_EQ(total["model_flops"].get<double>(), 5e18);
  EXPECT_DOUBLE_EQ(total["avg_mfu"].get<double>(), 0.4);
  EXPECT_DOUBLE_EQ(total["goodput"].get<double>(), 0.75);
  EXPECT_EQ(total["tokens"], 5000);
  EXPECT_EQ(total["energy"], "not measured");
  // The jobs, and the ledgers it covers: every line, first and head hashes.
  ASSERT_EQ(cert["jobs"].size(), 2u);
  EXPECT_EQ(cert["jobs"][0]["job"], "peng-2");
  EXPECT_EQ(cert["jobs"][1]["job"], "slurm-1");
  EXPECT_EQ(cert["jobs"][1]["config_hash"], std::string(64, '1'));
  EXPECT_EQ(cert["jobs"][1]["checkpoint_steps"], json::array({30}));
  EXPECT_EQ(cert["jobs"][1]["ledger"], "a.jsonl");
  const std::vector<std::string> lines = lines_of(a);
  EXPECT_EQ(cert["ledgers"][0], json({{"name", "a.jsonl"},
                                      {"first", ledger::sha256_hex(lines.front())},
                                      {"head", ledger::sha256_hex(lines.back())},
                                      {"records", 4},
                                      {"key_id", f.key->key_id()}}));

  const json read = read_signed(f.dir / "cert.json", f.key->public_key());
  EXPECT_EQ(read, cert);
  EXPECT_EQ(f.check(cert, {b, a}), "");  // any order
}

TEST(Certificate, CsvRows) {
  Fixture f;
  const json cert = f.issue({f.ledger_a(), f.ledger_b()});
  const std::vector<std::string> rows = [&] {
    std::vector<std::string> out;
    std::istringstream in(to_csv(cert));
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }();
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0],
            "contract,from,to,section,key,jobs,device_hours,pflops_hours,energy_kwh,tokens,"
            "model_flops,avg_mfu,goodput");
  const std::string prefix = "SZ-2025-07,2025-03-01T00:00:00Z,2025-04-01T00:00:00Z,";
  EXPECT_EQ(rows[1], prefix +
                         "device,NVIDIA H100 80GB HBM3,1,24,23.736,3.5,3000,"
                         "3000000000000000000,0.4,0.75");
  EXPECT_EQ(rows[3], prefix + "job,peng-2,1,4,0.0004,,2000,2000000000000000000,0.4,0.75");
  EXPECT_EQ(rows[5], prefix + "total,all,2,28,23.7364,,5000,5000000000000000000,0.4,0.75");
}

TEST(Certificate, EditedCertificateFailsItsSignature) {
  Fixture f;
  f.issue({f.ledger_a()});
  std::string text = testing::read_file(f.dir / "cert.json");
  const size_t at = text.find("\"tokens\":3000");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 13, "\"tokens\":3001");
  testing::write_file(f.dir / "edited.json", text);
  EXPECT_NE(input_error_of([&] { read_signed(f.dir / "edited.json", f.key->public_key()); })
                .find("edited.json: Ed25519 signature does not match: the certificate was "
                      "changed after it was signed"),
            std::string::npos);

  ledger::write_key_pair((f.dir / "other").string());
  EXPECT_NE(input_error_of([&] {
              read_signed(f.dir / "cert.json", ledger::PublicKey::load(f.dir / "other.pub.pem"));
            }).find("cert.json: signed by another key (key_id " + f.key->key_id()),
            std::string::npos);

  testing::write_file(f.dir / "pretty.json",
                      json::parse(testing::read_file(f.dir / "cert.json")).dump(1) + "\n");
  EXPECT_NE(input_error_of([&] {
              read_signed(f.dir / "pretty.json", f.key->public_key());
            }).find("not in canonical form"),
            std::string::npos);
  // Signed, but with a field a reader needs missing or of the wrong type: named.
  for (const auto& [path, value, says] :
       std::vector<std::tuple<json::json_pointer, json, std::string>>{
           {json::json_pointer("/contract"), 5, "contract is missing, empty or not a string"},
           {json::json_pointer("/ledgers/0/records"), 0,
            "ledgers[0].records is not a count of at least 1"},
           {json::json_pointer("/ledgers/0/records"), 4.0,
            "ledgers[0].records is not a count of at least 1"},
           {json::json_pointer("/period"), "March", "period is missing or not an object"}}) {
    json odd = json::parse(testing::read_file(f.dir / "cert.json"));
    odd[path] = value;
    sign(odd, *f.key);
    testing::write_file(f.dir / "odd.json", to_file(odd));
    EXPECT_NE(input_error_of([&] {
                read_signed(f.dir / "odd.json", f.key->public_key());
              }).find("odd.json: " + says),
              std::string::npos)
        << says;
  }
  testing::write_file(f.dir / "other.json", "{\"a\":1}\n");
  EXPECT_NE(input_error_of([&] {
              read_signed(f.dir / "other.json", f.key->public_key());
            }).find("not a peng certificate"),
            std::string::npos);
}

// The operator holds the key and can sign a certificate with any figures; the ledgers'
// records, signed as the job ran, are what such a certificate fails against.
TEST(Certificate, ChangedFigureSignedAgainIsNamed) {
  Fixture f;
  const fs::path a = f.ledger_a(), b = f.ledger_b();
  json cert = f.issue({a, b});
  json inflated = cert;
  inflated["total"]["tokens"] = 5001;
  sign(inflated, *f.key);
  EXPECT_NE(f.check(inflated, {a, b})
                .find("total.tokens: the certificate says 5001, the ledgers give 5000"),
            std::string::npos);
  inflated = cert;
  inflated["devices"][0]["pflops_hours"] = 30.0;
  sign(inflated, *f.key);
  EXPECT_NE(f.check(inflated, {a, b}).find("devices[0].pflops_hours: the certificate says 30.0"),
            std::string::npos);
  inflated = cert;
  inflated["jobs"][1]["devices"] = 8.0;  // an integer field written as a decimal
  sign(inflated, *f.key);
  EXPECT_NE(f.check(inflated, {a, b})
                .find("jobs[1].devices: the certificate says 8.0, the "
                      "ledgers give 8"),
            std::string::npos);
  inflated = cert;
  inflated["jobs"].erase(0);
  sign(inflated, *f.key);
  EXPECT_NE(f.check(inflated, {a, b}).find("jobs: the certificate lists 1, the ledgers give 2"),
            std::string::npos);
}

TEST(Certificate, LedgerCutAtItsTailOrRewrittenFails) {
  Fixture f;
  const fs::path a = f.ledger_a();
  const json cert = f.issue({a});
  std::vector<std::string> lines = lines_of(a);
  std::string cut;
  for (size_t i = 0; i + 1 < lines.size(); ++i) cut += lines[i] + "\n";
  testing::write_file(f.dir / "cut.jsonl", cut);
  EXPECT_NE(f.check(cert, {f.dir / "cut.jsonl"})
                .find("cut.jsonl: holds 3 records, fewer than the 4 the certificate covers of "
                      "ledger a.jsonl: records were cut off at its tail"),
            std::string::npos);

  // The same first record, then other figures, signed with the same key: a rewritten ledger.
  const fs::path rewritten = f.ledger_a("rewritten.jsonl", 2);
  ASSERT_EQ(lines_of(rewritten).front(), lines.front());
  EXPECT_NE(f.check(cert, {rewritten}).find("rewritten.jsonl: holds 3 records"), std::string::npos);
  {
    ledger::LedgerWriter w(rewritten, "", f.key);
    w.append(record("slurm-1", "NVIDIA H100 80GB HBM3", 8, 9, "2025-04-03T00:00:00Z", true));
  }
  EXPECT_NE(f.check(cert, {rewritten}).find("record 3 hashes to"), std::string::npos);
  EXPECT_NE(f.check(cert, {rewritten})
                .find("not the certificate's head " +
                      cert["ledgers"][0]["head"].get<std::string>() + ": the ledger was rewritten"),
            std::string::npos);

  // A ledger that grew after the certificate still holds every record it covered.
  {
    ledger::LedgerWriter w(a, "", f.key);
    w.append(record("slurm-1", "NVIDIA H100 80GB HBM3", 8, 5, "2025-03-30T00:00:00Z", true));
  }
  EXPECT_EQ(f.check(cert, {a}), "");
}

TEST(Certificate, EveryCoveredLedgerAndOnlyThoseMustBeGiven) {
  Fixture f;
  const fs::path a = f.ledger_a(), b = f.ledger_b();
  const json cert = f.issue({a, b});
  EXPECT_NE(f.check(cert, {a}).find("the certificate covers ledger b.jsonl (2 records, first "
                                    "record "),
            std::string::npos);
  EXPECT_NE(f.check(cert, {a}).find("but it was not given"), std::string::npos);
  const json only_a = f.issue({a});
  EXPECT_NE(f.check(only_a, {a, b}).find("b.jsonl is not a ledger the certificate covers"),
            std::string::npos);
  fs::copy_file(a, f.dir / "copy.jsonl");
  EXPECT_NE(f.check(only_a, {a, f.dir / "copy.jsonl"}).find("is the same ledger as"),
            std::string::npos);
}

TEST(Certificate, BadRequestsAreRefused) {
  Fixture f;
  const fs::path a = f.ledger_a();
  Request r = f.march();
  r.from = report::parse_time("2025-05-01", "from");
  r.to = report::parse_time("2025-06-01", "to");
  EXPECT_NE(input_error_of([&] { build(r, {f.load(a)}); })
                .find("no ledger record falls in the period [2025-05-01T00:00:00Z, "
                      "2025-06-01T00:00:00Z): a wrong period, or the ledger that covers it was "
                      "not given"),
            std::string::npos);
  r = f.march();
  r.to = r.from;
  EXPECT_NE(input_error_of([&] {
              build(r, {f.load(a)});
            }).find("the period's start 2025-03-01T00:00:00Z is not before its end"),
            std::string::npos);
  r = f.march();
  r.contract = "";
  EXPECT_NE(input_error_of([&] { build(r, {f.load(a)}); }).find("--contract"), std::string::npos);
  EXPECT_NE(input_error_of([&] {
              build(f.march(), {f.load(a), f.load(a)});
            }).find("two ledgers are named a.jsonl"),
            std::string::npos);
  {
    ledger::LedgerWriter w(f.dir / "plain.jsonl", "");
    w.append(record("slurm-9", "cpu: test", 1, 1, "2025-03-02T00:00:00Z", false));
  }
  EXPECT_NE(input_error_of([&] {
              build(f.march(), {load_ledger((f.dir / "plain.jsonl").string(), "", true)});
            }).find("plain.jsonl: its records are not Ed25519-signed"),
            std::string::npos);
}

TEST(CertificateHtml, BilingualEscapedAndComplete) {
  Fixture f;
  const json cert = f.issue({f.ledger_a(), f.ledger_b()});
  const std::string page = to_html(cert);
  for (const char* id : {"contract", "summary", "devices", "jobs", "ledgers", "signature"}) {
    EXPECT_NE(page.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  }
  for (const char* label : {"算力交付证明", "Compute delivery certificate", "设备时数",
                            "Device-hours", "交付算力", "PFLOP/s-hours", "未计量 not measured",
                            "合同编号", "Contract", "检查点步数", "Checkpoint steps"}) {
    EXPECT_NE(page.find(label), std::string::npos) << label;
  }
  EXPECT_NE(page.find("Acme &lt;AI&gt;"), std::string::npos);
  EXPECT_EQ(page.find("Acme <AI>"), std::string::npos);
  EXPECT_NE(page.find("鹏城 Compute"), std::string::npos);
  EXPECT_NE(page.find(cert["sig"].get<std::string>()), std::string::npos);
  EXPECT_NE(page.find(cert["ledgers"][0]["head"].get<std::string>()), std::string::npos);
  EXPECT_NE(page.find("3.5 kWh"), std::string::npos);  // the metered H100 row
  for (const char* external : {"http://", "https://", "src=", "<script", "url("}) {
    EXPECT_EQ(page.find(external), std::string::npos) << external;
  }
}

// The page in headless Chromium: every section in the DOM with its Chinese labels, no page
// errors, a non-trivial screenshot (PENG_CERTIFICATE_SCREENSHOT=PATH keeps it, for docs/).
TEST(CertificateHtml, RendersInHeadlessChromium) {
  if (testing::run_command({"sh", "-c", "command -v chromium"}).exit_code != 0) {
    GTEST_SKIP() << "no chromium on PATH";
  }
  // Without a CJK font the Chinese labels render as empty boxes: scripts/install_deps.sh
  // installs one with chromium.
  ASSERT_NE(testing::run_command({"fc-list", ":lang=zh-cn"}).stdout_text, "")
      << "no Chinese font (fonts-wqy-microhei): run scripts/install_deps.sh";
  Fixture f;
  const fs::path page = f.dir / "certificate.html", png = f.dir / "certificate.png";
  testing::write_file(page, to_html(f.issue({f.ledger_a(), f.ledger_b()})));
  const std::vector<std::string> chromium = {"timeout",
                                             "120",
                                             "chromium",
                                             "--headless",
                                             "--no-sandbox",
                                             "--disable-gpu",
                                             "--disable-dev-shm-usage",
                                             "--enable-logging=stderr",
                                             "--v=0"};
  const std::string url = "file://" + page.string();
  testing::CommandResult dom = testing::run_command(testing::joined(chromium, {"--dump-dom", url}));
  ASSERT_EQ(dom.exit_code, 0) << dom.stderr_text;
  for (const char* id : {"contract", "summary", "devices", "jobs", "ledgers", "signature"}) {
    EXPECT_NE(dom.stdout_text.find(std::string("id=\"") + id + "\""), std::string::npos) << id;
  }
  EXPECT_NE(dom.stdout_text.find("算力交付证明"), std::string::npos);
  testing::CommandResult shot = testing::run_command(
      testing::joined(chromium, {"--screenshot=" + png.string(), "--window-size=1200,1400", url}));
  ASSERT_EQ(shot.exit_code, 0) << shot.stderr_text;
  ASSERT_TRUE(fs::exists(png));
  EXPECT_GT(fs::file_size(png), 20u * 1024);
  for (const std::string* err : {&dom.stderr_text, &shot.stderr_text}) {
    std::istringstream lines(*err);
    for (std::string line; std::getline(lines, line);) {
      for (const char* bad : {"CONSOLE", "Uncaught", "Failed to load", "net::ERR_"}) {
        EXPECT_EQ(line.find(bad), std::string::npos) << line;
      }
    }
  }
  if (const char* keep = std::getenv("PENG_CERTIFICATE_SCREENSHOT")) {
    fs::copy_file(png, keep, fs::copy_options::overwrite_existing);
  }
}

}  // namespace
}  // namespace peng::certificate
