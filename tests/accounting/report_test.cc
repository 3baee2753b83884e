// `peng report`: totals of hand-made ledger records (cumulative records counted once by
// their deltas, windows splitting a job, project filter, MFU and goodput weighting, kWh
// unknown without a meter), the exact CSV and the JSON fields; then the command on ledgers
// written by LedgerWriter: --verify, tampering, wrong key, missing file, outputs.
#include <gtest/gtest.h>

#include <fstream>
#include <optional>

#include "peng/accounting/ledger.h"
#include "peng/accounting/report.h"
#include "peng/core/error.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// One record's cumulative state; step time = productive_s (so mfu = flops / (productive_s x
// devices x peak)).
struct Rec {
  std::string job, user, project, device, time, start;
  std::string kind = "interval", status = "running";
  int64_t devices = 1;
  double wall_s = 0, productive_s = 0, peak = 1e15, model_flops = 0;
  int64_t steps = 0, tokens = 0;
  std::optional<double> energy_j{}, loss{}, power_w{};
  std::vector<int64_t> checkpoints{};
};

json record(const Rec& r) {
  const double capacity = r.productive_s * double(r.devices) * r.peak;
  const json mfu = capacity > 0 ? json(r.model_flops / capacity) : json(nullptr);
  const auto opt = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  return {{"kind", r.kind},
          {"job", r.job},
          {"job_record", 0},
          {"project", r.project},
          {"user", r.user},
          {"hosts", {"node1"}},
          {"device", r.device},
          {"devices", r.devices},
          {"start", r.start},
          {"time", r.time},
          {"config_hash", std::string(64, 'a')},
          {"status", r.status},
          {"wall_s", r.wall_s},
          {"device_seconds", r.wall_s * double(r.devices)},
          {"productive_s", r.productive_s},
          {"goodput", r.wall_s > 0 ? r.productive_s / r.wall_s : 0.0},
          {"steps", r.steps},
          {"step", r.steps},
          {"tokens", r.tokens},
          {"model_flops", r.model_flops},
          {"peak_flops", r.peak},
          {"peak_source", "table"},
          {"mfu", mfu},
          {"hfu", mfu},
          {"energy_j", opt(r.energy_j)},
          {"energy_source", r.energy_j ? "nvml" : "none"},
          {"checkpoint_steps", r.checkpoints},
          {"loss", opt(r.loss)},
          {"interval_mfu", mfu},
          {"power_w", opt(r.power_w)}};
}

const char* const kH100 = "NVIDIA H100 80GB HBM3";
const char* const kCpu = "cpu: Xeon \"Gold\", 8 cores";

// Job slurm-1 (alice, p1, 2 H100s, metered) across two days: an interval record on March 1
// and its end record on March 2. Job slurm-2 (bob, p2, 1 CPU, no meter) on March 2, its
// interval record between slurm-1's two.
std::vector<json> sample_records() {
  const Rec a0{.job = "slurm-1",
               .user = "alice",
               .project = "p1",
               .device = kH100,
               .time = "2025-03-01T23:00:00Z",
               .start = "2025-03-01T22:00:00Z",
               .devices = 2,
               .wall_s = 3600,
               .productive_s = 3000,
               .model_flops = 2.4e18,
               .steps = 100,
               .tokens = 1000000,
               .energy_j = 3.6e6,
               .loss = 3.0,
               .power_w = 1400,
               .checkpoints = {50, 100}};
  Rec a1 = a0;
  a1.time = "2025-03-02T01:00:00Z";
  a1.kind = "end";
  a1.status = "completed";
  a1.wall_s = 10800, a1.productive_s = 9000, a1.model_flops = 5.4e18, a1.steps = 300;
  a1.tokens = 3000000, a1.energy_j = 1.08e7, a1.loss = 2.5, a1.checkpoints = {50, 100, 200, 300};
  const Rec b0{.job = "slurm-2",
               .user = "bob",
               .project = "p2",
               .device = kCpu,
               .time = "2025-03-02T01:00:00Z",
               .start = "2025-03-02T00:00:00Z",
               .wall_s = 3600,
               .productive_s = 1800,
               .peak = 1e12,
               .model_flops = 0.9e15,
               .steps = 10,
               .tokens = 250000,
               .loss = 5.0};
  Rec b1 = b0;
  b1.time = "2025-03-02T02:00:00Z";
  b1.kind = "end";
  b1.status = "failed: out of memory";
  b1.wall_s = 7200, b1.productive_s = 3600, b1.model_flops = 1.8e15, b1.steps = 20;
  b1.tokens = 500000, b1.checkpoints = {20};
  return {record(a0), record(b0), record(a1), record(b1)};
}

report::Report build(const report::Options& o, std::vector<json> records = sample_records()) {
  report::Ledger l;
  l.path = "usage.jsonl";
  l.records = int64_t(records.size());
  l.head = std::string(64, 'f');
  l.lines = std::move(records);
  return report::build_report({l}, o);
}

const report::Row& row(const report::Report& r, const std::string& group, const std::string& key) {
  for (const report::Row& x : r.groups.at(group)) {
    if (x.key == key) return x;
  }
  throw std::runtime_error("no row " + group + "/" + key);
}

TEST(ReportTotals, CumulativeRecordsCountEachJobOnce) {
  const report::Report r = build({});
  EXPECT_EQ(r.records_in_window, 4);
  EXPECT_EQ(r.total.jobs, 2);
  // slurm-1: 3 h x 2 devices; slurm-2: 2 h x 1 (not 1 + 3 + 1 + 2 h x devices).
  EXPECT_DOUBLE_EQ(r.total.device_hours, 8.0);
  EXPECT_EQ(r.total.tokens, 3500000);
  EXPECT_DOUBLE_EQ(r.total.model_flops, 5.4e18 + 1.8e15);
  const report::Row& a = row(r, "job", "slurm-1");
  EXPECT_DOUBLE_EQ(a.device_hours, 6.0);
  ASSERT_TRUE(a.kwh);
  EXPECT_DOUBLE_EQ(*a.kwh, 3.0);
  EXPECT_EQ(a.tokens, 3000000);
  // kWh is unknown where a record without a meter contributes.
  EXPECT_FALSE(row(r, "job", "slurm-2").kwh);
  EXPECT_FALSE(r.total.kwh);
  EXPECT_FALSE(row(r, "device", kCpu).kwh);
  EXPECT_DOUBLE_EQ(*row(r, "user", "alice").kwh, 3.0);
  EXPECT_EQ(row(r, "user", "bob").jobs, 1);
  EXPECT_DOUBLE_EQ(row(r, "device", kH100).device_hours, 6.0);
}

// A launcher that reuses a job id (a requeued Slurm job restarting its steps) starts a new
// series of cumulative records: its start time tells the runs apart.
TEST(ReportTotals, ARequeuedJobIdStartsANewSeries) {
  std::vector<json> records = sample_records();
  json again = records[2];  // slurm-1's end record, as the first record of a second run
  again["start"] = "2025-03-02T02:00:00Z";
  again["time"] = "2025-03-02T03:00:00Z";
  again["wall_s"] = 1800.0, again["device_seconds"] = 3600.0, again["tokens"] = 100;
  records.push_back(again);
  const report::Report r = build({}, records);
  // The first run's 6 device-hours stay; the second run adds its own hour.
  EXPECT_DOUBLE_EQ(row(r, "job", "slurm-1").device_hours, 7.0);
  EXPECT_EQ(row(r, "job", "slurm-1").tokens, 3000100);
}

TEST(ReportTotals, MfuIsWeightedByCapacityAndGoodputByDeviceSeconds) {
  const report::Report r = build({});
  // slurm-1: capacity 9000 s x 2 x 1e15 = 1.8e19 for 5.4e18 FLOPs; slurm-2: 3600 s x 1e12.
  ASSERT_TRUE(r.total.avg_mfu);
  EXPECT_NEAR(*r.total.avg_mfu, (5.4e18 + 1.8e15) / (1.8e19 + 3.6e15), 1e-12);
  EXPECT_NEAR(*row(r, "job", "slurm-1").avg_mfu, 0.3, 1e-12);
  EXPECT_NEAR(*row(r, "job", "slurm-2").avg_mfu, 0.5, 1e-12);
  // Goodput: productive device-seconds over device-seconds (18000 + 3600) / (21600 + 7200),
  // not the mean of 0.833 and 0.5.
  ASSERT_TRUE(r.total.goodput);
  EXPECT_NEAR(*r.total.goodput, 0.75, 1e-12);
  EXPECT_NEAR(*row(r, "job", "slurm-2").goodput, 0.5, 1e-12);
}

TEST(ReportTotals, PeriodsAndWindowsSplitAJobByItsDeltas) {
  const report::Report r = build({.period = report::Period::kDay});
  ASSERT_EQ(r.groups.at("period").size(), 2u);
  const report::Row& d1 = row(r, "period", "2025-03-01");
  EXPECT_EQ(d1.jobs, 1);
  EXPECT_DOUBLE_EQ(d1.device_hours, 2.0);
  EXPECT_DOUBLE_EQ(*d1.kwh, 1.0);
  EXPECT_NEAR(*d1.avg_mfu, 0.4, 1e-12);
  const report::Row& d2 = row(r, "period", "2025-03-02");
  EXPECT_EQ(d2.jobs, 2);
  EXPECT_DOUBLE_EQ(d2.device_hours, 6.0);  // slurm-1's last 2 h x 2, slurm-2's 2 h
  EXPECT_EQ(d2.tokens, 2500000);
  EXPECT_NEAR(*d2.avg_mfu, (3.0e18 + 1.8e15) / (1.2e19 + 3.6e15), 1e-12);
  EXPECT_NEAR(*d2.goodput, (12000.0 + 3600) / (14400 + 7200), 1e-12);
  EXPECT_EQ(build({}).groups.at("period").at(0).key, "2025-03");

  // From March 2 on, slurm-1 contributes only its end record's delta.
  const report::Report late = build({.from = report::parse_time("2025-03-02", "--from")});
  EXPECT_EQ(late.records_in_window, 3);
  EXPECT_DOUBLE_EQ(row(late, "job", "slurm-1").device_hours, 4.0);
  EXPECT_DOUBLE_EQ(*row(late, "job", "slurm-1").kwh, 2.0);
  EXPECT_NEAR(*row(late, "job", "slurm-1").avg_mfu, 0.25, 1e-12);
  ASSERT_EQ(late.jobs.size(), 2u);
  EXPECT_EQ(late.jobs[0].steps, 200);
  EXPECT_EQ(late.jobs[0].checkpoints, 2);
  EXPECT_EQ(late.jobs[0].start, "2025-03-01T22:00:00Z");

  // Before 01:00 on March 2 (exclusive): slurm-1's first record only.
  const report::Report early = build({.to = report::parse_time("2025-03-02T01:00:00Z", "--to")});
  EXPECT_EQ(early.records_in_window, 1);
  EXPECT_DOUBLE_EQ(early.total.device_hours, 2.0);
  ASSERT_EQ(early.jobs.size(), 1u);
  EXPECT_EQ(early.jobs[0].status, "running");
  EXPECT_FALSE(early.jobs[0].end);
}

TEST(ReportTotals, ProjectFilterAndJobDetails) {
  const report::Report r = build({.project = "p2"});
  EXPECT_EQ(r.records_in_window, 2);
  ASSERT_EQ(r.jobs.size(), 1u);
  const report::JobDetail& j = r.jobs[0];
  EXPECT_EQ(j.job, "slurm-2");
  EXPECT_EQ(j.status, "failed: out of memory");
  EXPECT_EQ(j.end, "2025-03-02T02:00:00Z");
  EXPECT_EQ(j.steps, 20);
  EXPECT_EQ(j.step, 20);
  EXPECT_EQ(j.checkpoints, 1);
  EXPECT_DOUBLE_EQ(r.total.device_hours, 2.0);
  EXPECT_EQ(r.groups.at("user").size(), 1u);
  ASSERT_EQ(r.series.at("slurm-2").size(), 2u);
  EXPECT_EQ(*r.series.at("slurm-2")[0].loss, 5.0);
}

TEST(ReportTotals, CsvText) {
  const report::Report r = build({.project = "p1", .period = report::Period::kDay});
  EXPECT_EQ(report::to_csv(r),
            "group,key,jobs,device_hours,kwh,tokens,model_flops,avg_mfu,goodput\n"
            "job,slurm-1,1,6.000000,3.000000,3000000,5400000000000000000,0.300000,0.833333\n"
            "user,alice,1,6.000000,3.000000,3000000,5400000000000000000,0.300000,0.833333\n"
            "device,NVIDIA H100 80GB HBM3,1,6.000000,3.000000,3000000,5400000000000000000,"
            "0.300000,0.833333\n"
            "period,2025-03-01,1,2.000000,1.000000,1000000,2400000000000000000,0.400000,"
            "0.833333\n"
            "period,2025-03-02,1,4.000000,2.000000,2000000,3000000000000000000,0.250000,"
            "0.833333\n"
            "total,all,1,6.000000,3.000000,3000000,5400000000000000000,0.300000,0.833333\n");
  // Keys with commas and quotes are quoted; unknown kWh is an empty cell.
  EXPECT_NE(report::to_csv(build({})).find("device,\"cpu: Xeon \"\"Gold\"\", 8 cores\",1,"
                                           "2.000000,,500000,1800000000000000,0.500000,"
                                           "0.500000\n"),
            std::string::npos);
}

TEST(ReportTotals, JsonFields) {
  const json j = report::to_json(build({.from = report::parse_time("2025-03-01", "--from")}));
  EXPECT_EQ(j["window"]["from"], "2025-03-01T00:00:00Z");
  EXPECT_TRUE(j["window"]["to"].is_null());
  EXPECT_TRUE(j["window"]["project"].is_null());
  EXPECT_EQ(j["window"]["period"], "month");
  ASSERT_EQ(j["ledgers"].size(), 1u);
  EXPECT_EQ(j["ledgers"][0]["path"], "usage.jsonl");
  EXPECT_EQ(j["ledgers"][0]["records"], 4);
  EXPECT_EQ(j["ledgers"][0]["head"], std::string(64, 'f'));
  EXPECT_EQ(j["ledgers"][0]["hmac_checked"], false);
  for (const char* g : {"job", "user", "device", "period"}) EXPECT_TRUE(j["groups"][g].is_array());
  EXPECT_EQ(j["groups"]["job"].size(), 2u);
  EXPECT_EQ(j["groups"]["job"][0]["key"], "slurm-1");
  EXPECT_DOUBLE_EQ(j["groups"]["job"][0]["kwh"].get<double>(), 3.0);
  EXPECT_TRUE(j["groups"]["job"][1]["kwh"].is_null());
  EXPECT_DOUBLE_EQ(j["total"]["device_hours"].get<double>(), 8.0);
  EXPECT_TRUE(j["total"]["kwh"].is_null());
  EXPECT_EQ(j["total"]["jobs"], 2);
  ASSERT_EQ(j["jobs"].size(), 2u);
  EXPECT_EQ(j["jobs"][0]["status"], "completed");
  EXPECT_EQ(j["jobs"][0]["devices"], 2);
  EXPECT_EQ(j["jobs"][0]["checkpoints"], 4);
  EXPECT_EQ(j["jobs"][0]["end"], "2025-03-02T01:00:00Z");
  EXPECT_EQ(j["jobs"][0]["hosts"], json({"node1"}));
  EXPECT_EQ(j["records_in_window"], 4);
}

TEST(ReportTotals, TextTable) {
  const std::string t = report::to_text(build({}));
  EXPECT_NE(t.find("usage report: 4 records, window [start, end)"), std::string::npos) << t;
  EXPECT_NE(t.find("slurm-1"), std::string::npos);
  EXPECT_NE(t.find("30.0%"), std::string::npos);  // slurm-1's avg_mfu
  EXPECT_NE(t.find("n/a"), std::string::npos);    // slurm-2's kWh
  EXPECT_NE(t.find("failed: out of memory"), std::string::npos);
}

TEST(ReportTotals, BadDatesAndRecordsAreInputErrors) {
  EXPECT_DOUBLE_EQ(report::parse_time("2025-03-01", "--from"), 1740787200.0);
  EXPECT_DOUBLE_EQ(report::parse_time("2025-03-01T12:34:56Z", "--from"), 1740832496.0);
  EXPECT_DOUBLE_EQ(report::parse_time("2025-03-01T12:34:56.5Z", "--from"), 1740832496.5);
  for (const char* bad : {"2025-02-30", "2025-13-01", "2025-03-01T25:00:00Z", "yesterday",
                          "2025-03-01T12:34:56", "2025-3-1", "2025-03-01T12:34:56.Z"}) {
    try {
      report::parse_time(bad, "--from");
      ADD_FAILURE() << bad << " parsed";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--from"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(report::parse_period("week"), InputError);

  std::vector<json> records = sample_records();
  records[2].erase("tokens");
  try {
    build({}, records);
    ADD_FAILURE() << "a record without tokens was accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "ledger usage.jsonl: record 2: field \"tokens\" is missing or not an integer");
  }
}

// ---- the command, on ledgers written by LedgerWriter ----

class ReportCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_file(key_file(), "secret key\n");
    ledger::LedgerWriter w(ledger_path(), "secret key");
    for (const json& r : sample_records()) last_line_ = w.append(r);
  }
  fs::path ledger_path() const { return tmp_ / "usage.jsonl"; }
  fs::path key_file() const { return tmp_ / "ledger.key"; }

  // Replaces the first `from` in line `line` (0-based) of the ledger by `to`.
  void tamper(int line, const std::string& from, const std::string& to) {
    std::ifstream in(ledger_path());
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    const size_t at = lines.at(size_t(line)).find(from);
    ASSERT_NE(at, std::string::npos);
    lines[size_t(line)].replace(at, from.size(), to);
    std::string text;
    for (const std::string& l : lines) text += l + "\n";
    testing::write_file(ledger_path(), text);
  }

  testing::TempDir tmp_;
  std::string last_line_;
};

// Expects a failed command with exactly one `error:` line equal to `line`.
void expect_error(const testing::CommandResult& r, const std::string& line) {
  EXPECT_EQ(r.exit_code, 1);
  const std::vector<std::string> errors = testing::error_lines(r.stderr_text);
  ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
  EXPECT_EQ(errors[0], line);
}

TEST_F(ReportCommand, VerifyPrintsRecordsAndHead) {
  const std::string head = ledger::sha256_hex(last_line_);
  testing::CommandResult r = testing::run_peng(
      {"report", ledger_path().string(), "--verify", "--ledger-key", key_file().string()});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(r.stdout_text,
            ledger_path().string() + ": ok, 4 records, head " + head + ", HMACs checked\n");
  r = testing::run_peng({"report", ledger_path().string(), "--verify"});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
  EXPECT_EQ(r.stdout_text, ledger_path().string() + ": ok, 4 records, head " + head + "\n");
}

TEST_F(ReportCommand, TamperedLedgerIsRefused) {
  tamper(2, "\"tokens\":3000000", "\"tokens\":3900000");
  const std::string path = ledger_path().string();
  // With the key the edited record itself fails; without, the chain breaks at the next.
  expect_error(testing::run_peng({"report", path, "--verify", "--ledger-key", key_file().string()}),
               "error: " + path +
                   ": record 2 (line 3): hmac does not match (edited record or "
                   "wrong key)");
  const testing::CommandResult r = testing::run_peng({"report", path, "--verify"});
  expect_error(r, "error: " + path +
                      ": record 3 (line 4): prev does not match the hash of line 3 (edited, "
                      "deleted, inserted or reordered record)");
  EXPECT_EQ(r.stdout_text, "");
  // Without --verify no report is written either.
  const fs::path csv = tmp_ / "out.csv";
  const testing::CommandResult rep = testing::run_peng({"report", path, "--csv", csv.string()});
  EXPECT_EQ(rep.exit_code, 1);
  EXPECT_NE(rep.stderr_text.find("record 3 (line 4)"), std::string::npos) << rep.stderr_text;
  EXPECT_FALSE(fs::exists(csv));
}

TEST_F(ReportCommand, WrongKeyAndMissingFiles) {
  const fs::path wrong = tmp_ / "wrong.key";
  testing::write_file(wrong, "another key");
  const std::string path = ledger_path().string();
  expect_error(
      testing::run_peng({"report", path, "--verify", "--ledger-key", wrong.string()}),
      "error: " + path + ": record 0 (line 1): hmac does not match (edited record or wrong key)");
  const std::string missing = (tmp_ / "nope.jsonl").string();
  expect_error(testing::run_peng({"report", path, missing}),
               "error: " + missing + ": no such ledger file");
  const testing::CommandResult r =
      testing::run_peng({"report", path, "--ledger-key", (tmp_ / "nope.key").string()});
  EXPECT_EQ(r.exit_code, 1);
  ASSERT_EQ(testing::error_lines(r.stderr_text).size(), 1u) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("nope.key"), std::string::npos);
  expect_error(testing::run_peng({"report", path, "--from", "2025-02-30"}),
               "error: --from: '2025-02-30' is not a date (YYYY-MM-DD) or UTC time "
               "(YYYY-MM-DDTHH:MM:SSZ)");
}

TEST_F(ReportCommand, TheSameLedgerTwiceIsRefused) {
  const std::string path = ledger_path().string();
  const fs::path copy = tmp_ / "copy.jsonl";
  fs::copy_file(ledger_path(), copy);
  expect_error(
      testing::run_peng({"report", path, path}),
      "error: " + path + " is the same ledger as " + path + " (its records would count twice)");
  expect_error(testing::run_peng({"report", path, copy.string()}),
               "error: " + copy.string() + " is the same ledger as " + path +
                   " (its records would count twice)");
}

TEST_F(ReportCommand, WritesTheOutputs) {
  const fs::path csv = tmp_ / "r.csv", js = tmp_ / "r.json", html = tmp_ / "r.html";
  const testing::CommandResult r =
      testing::run_peng({"report", ledger_path().string(), "--ledger-key", key_file().string(),
                         "--period", "day", "--from", "2025-03-02", "--csv", csv.string(), "--json",
                         js.string(), "--html", html.string()});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;

  report::Ledger l;
  l.path = ledger_path().string();
  l.lines = ledger::read_verified(ledger_path(), "secret key");
  l.records = int64_t(l.lines.size());
  l.head = ledger::sha256_hex(last_line_);
  l.hmac_checked = true;
  const report::Report want = report::build_report(
      {l}, {.from = report::parse_time("2025-03-02", "--from"), .period = report::Period::kDay});
  EXPECT_EQ(r.stdout_text, report::to_text(want));
  EXPECT_EQ(testing::read_file(csv), report::to_csv(want));
  const json j = json::parse(testing::read_file(js));
  EXPECT_EQ(j, report::to_json(want));
  EXPECT_EQ(j["ledgers"][0]["hmac_checked"], true);
  EXPECT_EQ(j["ledgers"][0]["head"], ledger::sha256_hex(last_line_));
  EXPECT_EQ(j["records_in_window"], 3);
  const std::string page = testing::read_file(html);
  EXPECT_NE(page.find("id=\"chart-hours\""), std::string::npos);
  EXPECT_NE(page.find(ledger::sha256_hex(last_line_)), std::string::npos);
}

}  // namespace
}  // namespace peng
