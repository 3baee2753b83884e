// `peng report`'s totals: usage ledger records (accounting/ledger.h) aggregated per job,
// user, device model and period, with CSV, JSON and plain-text renderings.
//
// Cumulative records. Every record of a job carries totals since the job's start, so each
// record contributes its delta: its cumulative values minus those of the previous record
// of the same job in the same ledger (zero before the first). A job therefore counts once
// however many interval records it wrote, and the delta of a record belongs to the record's
// "time" (the end of its interval): the window [from, to) and the periods split a job by
// the records that fall into them.
//
// Columns (one meaning everywhere: CSV, JSON, text, HTML):
//   jobs          distinct job ids with at least one record in the group
//   device_hours  device_seconds / 3600: GPU-hours on GPUs, CPU-process-hours on CPUs
//                 (a CPU "device" is one rank: "device" reads "cpu: <model>")
//   kwh           energy_j / 3.6e6; unknown (null in JSON, empty in CSV, "n/a" in text)
//                 when any contributing record has no meter (energy_j null): a partial
//                 sum would understate what a claim covers
//   tokens        training tokens
//   model_flops   model FLOPs (6 N + 12 L C T per token, telemetry/flops.h)
//   avg_mfu       sum model_flops / sum (step seconds x devices x peak_flops). A record's
//                 "mfu" is over the job's step time, so model_flops / mfu is the peak
//                 capacity (device-seconds in steps x peak FLOP/s) spent so far; its deltas
//                 weight every interval by the capacity it used, across devices of any
//                 peak. Records without a positive mfu (no step yet, unknown peak) add
//                 neither FLOPs nor capacity; null when no capacity is known
//   goodput       sum productive_s x devices / sum device_seconds (null when 0 device-s)
// Carried for delivery certificates (accounting/certificate.h), in the JSON row only:
//   pflops_hours  sum device_seconds x peak_flops / 3600 / 1e15: the rated capacity
//                 delivered (device-hours x each device's dense peak); null when a
//                 contributing record has no peak_flops
//   peaks         the distinct (peak_source, peak TFLOP/s) of the contributing records
//
// Bad input (a malformed date, a record field missing or of the wrong type) throws
// peng::InputError naming the ledger, the record and the field.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace peng::report {

// "YYYY-MM-DD" (midnight UTC) or "YYYY-MM-DDTHH:MM:SS[.fff]Z" as Unix seconds; throws
// InputError naming `what` (e.g. "--from") otherwise.
double parse_time(const std::string& text, const std::string& what);
// Unix seconds as "YYYY-MM-DDTHH:MM:SSZ".
std::string format_time(double unix_seconds);

// printf into a std::string (the report's number formats).
__attribute__((format(printf, 1, 2))) std::string format(const char* fmt, ...);

enum class Period { kDay, kMonth };
// "day" | "month"; throws InputError otherwise.
Period parse_period(const std::string& name);

struct Options {
  std::optional<double> from{}, to{};    // window [from, to) on record "time", Unix seconds
  std::optional<std::string> project{};  // only records of this project
  Period period = Period::kMonth;        // key of the "period" group: "YYYY-MM-DD" | "YYYY-MM"
};

// One verified ledger (ledger::verify / read_verified) and its records in file order.
struct Ledger {
  std::string path;
  int64_t records = 0;
  std::string head;  // SHA-256 of the last line
  bool hmac_checked = false;
  std::string key_id;  // the Ed25519 public key whose signatures were checked ("" = none)
  std::vector<nlohmann::json> lines;
};

// A per-device peak a record was rated at (telemetry/peak.h).
struct RatedPeak {
  std::string source;  // "table: H100 SXM (bf16 dense)", "sgemm probe (...)", "--peak"
  double tflops = 0;
  auto operator<=>(const RatedPeak&) const = default;
};

// One row of a group (see the columns above).
struct Row {
  std::string key;
  int64_t jobs = 0;
  double device_hours = 0;
  std::optional<double> kwh;
  int64_t tokens = 0;
  double model_flops = 0;
  std::optional<double> avg_mfu, goodput;
  std::optional<double> pflops_hours;
  std::vector<RatedPeak> peaks;  // sorted
};

// What one job did in the window, beside its row in the "job" group.
struct JobDetail {
  std::string job, project, user, device, ledger;
  int64_t devices = 0;
  std::vector<std::string> hosts;
  std::string start;                      // the job's start
  std::string last;                       // time of its last record in the window
  std::optional<std::string> end;         // time of its "end" record when that is in the window
  std::string status;                     // of its last record in the window
  int64_t steps = 0;                      // optimizer steps run in the window
  int64_t step = 0;                       // training step reached at its last record
  int64_t checkpoints = 0;                // checkpoints committed in the window
  std::string config_hash;                // of its last record in the window
  std::vector<int64_t> checkpoint_steps;  // steps saved since its start, at that record
};

// The chart data of one record in the window (null where the record has none).
struct Point {
  double time = 0;  // Unix seconds
  std::optional<double> loss, interval_mfu, power_w;
};

struct Report {
  Options options;
  std::vector<Ledger> ledgers;  // without their lines
  // "job", "user", "device", "period": rows sorted by key.
  std::map<std::string, std::vector<Row>> groups;
  Row total;                                         // key "all"
  std::vector<JobDetail> jobs;                       // sorted by job id
  std::map<std::string, std::vector<Point>> series;  // job -> points in time order
  int64_t records_in_window = 0;
};

// The group names, in the order every rendering lists them.
const std::vector<std::string>& group_names();

// Aggregates the records of `ledgers` that fall into the window and project of `options`.
Report build_report(std::vector<Ledger> ledgers, const Options& options);

// A number, or null when unknown.
nlohmann::json optional_json(const std::optional<double>& v);
// [{"source", "tflops"}, ...].
nlohmann::json peaks_json(const std::vector<RatedPeak>& peaks);

// A CSV field: quoted (quotes doubled) when it holds a comma, quote or line break.
std::string csv_field(const std::string& s);

// CSV (RFC 4180, "\n" line ends): header "group,key,jobs,device_hours,kwh,tokens,
// model_flops,avg_mfu,goodput", then the rows of every group in group_names() order and a
// last row "total,all,...". device_hours and kwh with 6 decimals (kwh empty when unknown),
// tokens and model_flops as integers, avg_mfu and goodput with 6 decimals (empty when
// unknown); keys quoted when they hold a comma, quote or line break.
std::string to_csv(const Report& r);

// {"window": {"from", "to" (ISO or null), "project" (or null), "period"},
//  "ledgers": [{"path", "records", "head", "hmac_checked", "signatures_key_id"}],
//  "records_in_window": n,
//  "groups": {"job": [row...], "user": [...], "device": [...], "period": [...]},
//  "total": row,
//  "jobs": [{"job", "project", "user", "device", "devices", "hosts", "ledger", "start",
//            "last", "end" (or null), "status", "steps", "step", "checkpoints"}]}
// where a row is {"key", "jobs", "device_hours", "kwh", "tokens", "model_flops",
// "avg_mfu", "goodput", "pflops_hours", "peaks": [{"source", "tflops"}]} with null for
// unknown values.
nlohmann::json to_json(const Report& r);

// The cells of a row as to_text and the HTML page show them: key, jobs, device_hours and
// kwh with 3 decimals (kwh "n/a" when unknown), tokens, model_flops as %.3e, avg_mfu and
// goodput as percentages with 1 decimal ("n/a" when unknown).
std::vector<std::string> row_cells(const Row& row);

// Plain-text tables for a terminal: one per group and the total (columns as in the CSV),
// then one line per job: user, project, start, last, devices, steps, step, checkpoints,
// status.
std::string to_text(const Report& r);

}  // namespace peng::report
