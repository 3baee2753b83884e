#include "peng/accounting/report.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <set>
#include <string_view>

#include "peng/core/error.h"

namespace peng::report {

std::string format(const char* fmt, ...) {
  va_list args, again;
  va_start(args, fmt);
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, fmt, args);
  va_end(args);
  std::string s(size_t(n) + 1, '\0');
  std::vsnprintf(s.data(), s.size(), fmt, again);
  va_end(again);
  s.resize(size_t(n));
  return s;
}

namespace {

using nlohmann::json;

// `n` decimal digits of `s` at `at` into `out`.
bool read_digits(std::string_view s, size_t at, size_t n, int& out) {
  if (at + n > s.size()) return false;
  out = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

// Unix seconds of "YYYY-MM-DD[THH:MM:SS[.fff]Z]", or nullopt when `s` is no such time.
std::optional<double> try_parse_time(std::string_view s) {
  int y, mo, d, h = 0, mi = 0, sec = 0;
  if (!read_digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !read_digits(s, 5, 2, mo) ||
      s[7] != '-' || !read_digits(s, 8, 2, d)) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year(y), std::chrono::month(unsigned(mo)),
                                         std::chrono::day(unsigned(d))};
  if (!date.ok()) return std::nullopt;
  double fraction = 0;
  if (s.size() > 10) {
    if (s.size() < 20 || s[10] != 'T' || !read_digits(s, 11, 2, h) || s[13] != ':' ||
        !read_digits(s, 14, 2, mi) || s[16] != ':' || !read_digits(s, 17, 2, sec) || h > 23 ||
        mi > 59 || sec > 59 || s.back() != 'Z') {
      return std::nullopt;
    }
    const std::string_view frac = s.substr(19, s.size() - 20);  // "" or ".fff"
    if (!frac.empty()) {
      if (frac.size() < 2 || frac[0] != '.') return std::nullopt;
      for (char c : frac.substr(1)) {
        if (c < '0' || c > '9') return std::nullopt;
      }
      // Correctly rounded, as any other reader of the ledger (Python's float()) reads it.
      std::string digits = "0";
      digits += frac;
      std::from_chars(digits.data(), digits.data() + digits.size(), fraction);
    }
  }
  const auto days = std::chrono::sys_days(date).time_since_epoch().count();
  return double(days) * 86400 + h * 3600 + mi * 60 + sec + fraction;
}

// Where a record is, for error messages.
struct Where {
  const std::string& ledger;
  size_t index;
};

[[noreturn]] void bad_field(const Where& w, const char* field, const char* want) {
  throw InputError(detail::concat("ledger ", w.ledger, ": record ", w.index, ": field \"", field,
                                  "\" is missing or not ", want));
}

double number(const json& r, const char* field, const Where& w) {
  const auto it = r.find(field);
  if (it == r.end() || !it->is_number()) bad_field(w, field, "a number");
  return it->get<double>();
}

// Null (or absent) reads as unknown.
std::optional<double> optional_number(const json& r, const char* field, const Where& w) {
  const auto it = r.find(field);
  if (it == r.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) bad_field(w, field, "a number or null");
  return it->get<double>();
}

int64_t integer(const json& r, const char* field, const Where& w) {
  const auto it = r.find(field);
  if (it == r.end() || !it->is_number_integer()) bad_field(w, field, "an integer");
  return it->get<int64_t>();
}

std::string text(const json& r, const char* field, const Where& w) {
  const auto it = r.find(field);
  if (it == r.end() || !it->is_string()) bad_field(w, field, "a string");
  return it->get<std::string>();
}

double time_of(const json& r, const char* field, const Where& w) {
  const std::optional<double> t = try_parse_time(text(r, field, w));
  if (!t) bad_field(w, field, "an ISO 8601 UTC time (YYYY-MM-DDTHH:MM:SSZ)");
  return *t;
}

// A record's cumulative totals, in the units the columns sum.
struct Totals {
  double device_seconds = 0;
  double productive_device_seconds = 0;  // productive_s x devices
  int64_t tokens = 0;
  double model_flops = 0;
  double mfu_flops = 0;  // model_flops of records with a positive mfu
  double capacity = 0;   // model_flops / mfu: device-seconds in steps x peak FLOP/s
  std::optional<double> energy_j = 0.0;
  std::optional<double> rated_flop = 0.0;  // device_seconds x peak_flops
  int64_t steps = 0;
  int64_t checkpoints = 0;
};

Totals totals_of(const json& r, const Where& w) {
  Totals t;
  t.device_seconds = number(r, "device_seconds", w);
  t.productive_device_seconds = number(r, "productive_s", w) * double(integer(r, "devices", w));
  t.tokens = integer(r, "tokens", w);
  t.model_flops = number(r, "model_flops", w);
  const std::optional<double> mfu = optional_number(r, "mfu", w);
  if (mfu && *mfu > 0) {
    t.mfu_flops = t.model_flops;
    t.capacity = t.model_flops / *mfu;
  }
  t.energy_j = optional_number(r, "energy_j", w);
  const std::optional<double> peak = optional_number(r, "peak_flops", w);
  t.rated_flop = peak ? std::optional(t.device_seconds * *peak) : std::nullopt;
  t.steps = integer(r, "steps", w);
  const auto ck = r.find("checkpoint_steps");
  if (ck == r.end() || !ck->is_array()) bad_field(w, "checkpoint_steps", "an array");
  t.checkpoints = int64_t(ck->size());
  return t;
}

// a - b, unknown when either is.
std::optional<double> minus(const std::optional<double>& a, const std::optional<double>& b) {
  return a && b ? std::optional(*a - *b) : std::nullopt;
}

// a + b, unknown when either is: a partial sum would understate what it covers.
std::optional<double> plus(const std::optional<double>& a, const std::optional<double>& b) {
  return a && b ? std::optional(*a + *b) : std::nullopt;
}

// What a record adds: `cur` minus `prev`; energy unknown when either side has no meter.
Totals delta(const Totals& cur, const Totals& prev) {
  Totals d;
  d.device_seconds = cur.device_seconds - prev.device_seconds;
  d.productive_device_seconds = cur.productive_device_seconds - prev.productive_device_seconds;
  d.tokens = cur.tokens - prev.tokens;
  d.model_flops = cur.model_flops - prev.model_flops;
  d.mfu_flops = cur.mfu_flops - prev.mfu_flops;
  d.capacity = cur.capacity - prev.capacity;
  d.energy_j = minus(cur.energy_j, prev.energy_j);
  d.rated_flop = minus(cur.rated_flop, prev.rated_flop);
  d.steps = cur.steps - prev.steps;
  d.checkpoints = cur.checkpoints - prev.checkpoints;
  return d;
}

// The sums behind one row.
struct Accumulator {
  std::set<std::string> jobs;
  std::set<RatedPeak> peaks;
  Totals sum;

  void add(const std::string& job, const Totals& d, const std::optional<RatedPeak>& peak) {
    jobs.insert(job);
    if (peak) peaks.insert(*peak);
    sum.device_seconds += d.device_seconds;
    sum.productive_device_seconds += d.productive_device_seconds;
    sum.tokens += d.tokens;
    sum.model_flops += d.model_flops;
    sum.mfu_flops += d.mfu_flops;
    sum.capacity += d.capacity;
    sum.energy_j = plus(sum.energy_j, d.energy_j);
    sum.rated_flop = plus(sum.rated_flop, d.rated_flop);
  }

  Row row(std::string key) const {
    Row r;
    r.key = std::move(key);
    r.jobs = int64_t(jobs.size());
    r.device_hours = sum.device_seconds / 3600;
    if (sum.energy_j) r.kwh = *sum.energy_j / 3.6e6;
    r.tokens = sum.tokens;
    r.model_flops = sum.model_flops;
    if (sum.capacity > 0) r.avg_mfu = sum.mfu_flops / sum.capacity;
    if (sum.device_seconds > 0) r.goodput = sum.productive_device_seconds / sum.device_seconds;
    if (sum.rated_flop) r.pflops_hours = *sum.rated_flop / 3600 / 1e15;
    r.peaks.assign(peaks.begin(), peaks.end());
    return r;
  }
};

std::vector<int64_t> checkpoint_steps(const json& r, const Where& w) {
  std::vector<int64_t> steps;
  for (const json& s : r.at("checkpoint_steps")) {  // an array: checked by totals_of
    if (!s.is_number_integer()) bad_field(w, "checkpoint_steps", "an array of integers");
    steps.push_back(s.get<int64_t>());
  }
  return steps;
}

// The peak a record was rated at; nullopt when it names none.
std::optional<RatedPeak> rated_peak(const json& r, const Where& w) {
  const std::optional<double> flops = optional_number(r, "peak_flops", w);
  if (!flops) return std::nullopt;
  const auto source = r.find("peak_source");
  return RatedPeak{source != r.end() && source->is_string() ? source->get<std::string>() : "",
                   *flops / 1e12};
}

std::string period_key(double time, Period p) {
  return format_time(time).substr(0, p == Period::kDay ? 10 : 7);
}

json row_json(const Row& r) {
  return {{"key", r.key},
          {"jobs", r.jobs},
          {"device_hours", r.device_hours},
          {"kwh", optional_json(r.kwh)},
          {"tokens", r.tokens},
          {"model_flops", r.model_flops},
          {"avg_mfu", optional_json(r.avg_mfu)},
          {"goodput", optional_json(r.goodput)},
          {"pflops_hours", optional_json(r.pflops_hours)},
          {"peaks", peaks_json(r.peaks)}};
}

std::string csv_decimal(const std::optional<double>& v) {
  return v ? format("%.6f", *v) : std::string();
}

std::string csv_row(const std::string& group, const Row& r) {
  return group + "," + csv_field(r.key) + "," + std::to_string(r.jobs) + "," +
         format("%.6f", r.device_hours) + "," + csv_decimal(r.kwh) + "," +
         std::to_string(r.tokens) + "," + format("%.0f", r.model_flops) + "," +
         csv_decimal(r.avg_mfu) + "," + csv_decimal(r.goodput) + "\n";
}

std::string percent(const std::optional<double>& v) {
  return v ? format("%.1f%%", *v * 100) : std::string("n/a");
}

// Columns padded to their widest cell; `align` holds 'l' or 'r' per column.
std::string text_table(const std::vector<std::vector<std::string>>& cells, std::string_view align) {
  std::vector<size_t> width;
  for (const auto& row : cells) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      line += (c == 0 ? "" : "  ") + (align[c] == 'l' ? row[c] + pad : pad + row[c]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace

json optional_json(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

json peaks_json(const std::vector<RatedPeak>& peaks) {
  json out = json::array();
  for (const RatedPeak& p : peaks) out.push_back({{"source", p.source}, {"tflops", p.tflops}});
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

double parse_time(const std::string& text, const std::string& what) {
  const std::optional<double> t = try_parse_time(text);
  PENG_INPUT_CHECK(t, what, ": '", text,
                   "' is not a date (YYYY-MM-DD) or UTC time (YYYY-MM-DDTHH:MM:SSZ)");
  return *t;
}

std::string format_time(double unix_seconds) {
  const std::time_t t = std::time_t(std::floor(unix_seconds));
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Period parse_period(const std::string& name) {
  if (name == "day") return Period::kDay;
  PENG_INPUT_CHECK(name == "month", "--period: '", name, "' is not day or month");
  return Period::kMonth;
}

const std::vector<std::string>& group_names() {
  static const std::vector<std::string> kNames = {"job", "user", "device", "period"};
  return kNames;
}

Report build_report(std::vector<Ledger> ledgers, const Options& options) {
  Report rep;
  rep.options = options;
  std::map<std::string, std::map<std::string, Accumulator>> groups;
  Accumulator total;
  std::map<std::string, JobDetail> jobs;
  for (Ledger& ledger : ledgers) {
    // (job, start) -> its last record's totals in this ledger: a job id a launcher reuses
    // (a requeued Slurm job) starts a new series at its new start time.
    std::map<std::pair<std::string, std::string>, Totals> previous;
    for (size_t i = 0; i < ledger.lines.size(); ++i) {
      const json& r = ledger.lines[i];
      const Where w{ledger.path, i};
      const std::string job = text(r, "job", w);
      const Totals cur = totals_of(r, w);
      Totals& last = previous[{job, text(r, "start", w)}];
      const Totals d = delta(cur, last);
      last = cur;

      const double time = time_of(r, "time", w);
      const std::string project = text(r, "project", w);
      if ((options.from && time < *options.from) || (options.to && time >= *options.to) ||
          (options.project && project != *options.project)) {
        continue;
      }
      ++rep.records_in_window;
      const std::string user = text(r, "user", w), device = text(r, "device", w);
      const std::optional<RatedPeak> peak = rated_peak(r, w);
      groups["job"][job].add(job, d, peak);
      groups["user"][user].add(job, d, peak);
      groups["device"][device].add(job, d, peak);
      groups["period"][period_key(time, options.period)].add(job, d, peak);
      total.add(job, d, peak);

      JobDetail& jd = jobs[job];
      if (jd.job.empty()) {
        jd.job = job;
        jd.start = format_time(time_of(r, "start", w));
      }
      jd.project = project;
      jd.user = user;
      jd.device = device;
      jd.ledger = ledger.path;
      jd.devices = integer(r, "devices", w);
      jd.hosts.clear();
      const auto hosts = r.find("hosts");
      if (hosts == r.end() || !hosts->is_array()) bad_field(w, "hosts", "an array");
      for (const json& h : *hosts) {
        if (!h.is_string()) bad_field(w, "hosts", "an array of strings");
        jd.hosts.push_back(h.get<std::string>());
      }
      jd.last = format_time(time);
      jd.status = text(r, "status", w);
      if (text(r, "kind", w) == "end") jd.end = jd.last;
      jd.steps += d.steps;
      jd.step = integer(r, "step", w);
      jd.checkpoints += d.checkpoints;
      jd.config_hash = text(r, "config_hash", w);
      jd.checkpoint_steps = checkpoint_steps(r, w);

      rep.series[job].push_back({time, optional_number(r, "loss", w),
                                 optional_number(r, "interval_mfu", w),
                                 optional_number(r, "power_w", w)});
    }
    ledger.lines.clear();
    rep.ledgers.push_back(std::move(ledger));
  }
  for (const std::string& g : group_names()) {
    std::vector<Row>& rows = rep.groups[g];
    for (const auto& [key, acc] : groups[g]) rows.push_back(acc.row(key));
  }
  rep.total = total.row("all");
  for (auto& [job, jd] : jobs) rep.jobs.push_back(std::move(jd));
  for (auto& [job, points] : rep.series) {
    std::stable_sort(points.begin(), points.end(),
                     [](const Point& a, const Point& b) { return a.time < b.time; });
  }
  return rep;
}

std::string to_csv(const Report& r) {
  std::string out = "group,key,jobs,device_hours,kwh,tokens,model_flops,avg_mfu,goodput\n";
  for (const std::string& g : group_names()) {
    for (const Row& row : r.groups.at(g)) out += csv_row(g, row);
  }
  return out + csv_row("total", r.total);
}

json to_json(const Report& r) {
  json out;
  const auto window_end = [](const std::optional<double>& t) {
    return t ? json(format_time(*t)) : json(nullptr);
  };
  out["window"] = {{"from", window_end(r.options.from)},
                   {"to", window_end(r.options.to)},
                   {"project", r.options.project ? json(*r.options.project) : json(nullptr)},
                   {"period", r.options.period == Period::kDay ? "day" : "month"}};
  out["ledgers"] = json::array();
  for (const Ledger& l : r.ledgers) {
    out["ledgers"].push_back({{"path", l.path},
                              {"records", l.records},
                              {"head", l.head},
                              {"hmac_checked", l.hmac_checked},
                              {"signatures_key_id", l.key_id}});
  }
  out["records_in_window"] = r.records_in_window;
  for (const std::string& g : group_names()) {
    out["groups"][g] = json::array();
    for (const Row& row : r.groups.at(g)) out["groups"][g].push_back(row_json(row));
  }
  out["total"] = row_json(r.total);
  out["jobs"] = json::array();
  for (const JobDetail& j : r.jobs) {
    out["jobs"].push_back({{"job", j.job},
                           {"project", j.project},
                           {"user", j.user},
                           {"device", j.device},
                           {"devices", j.devices},
                           {"hosts", j.hosts},
                           {"ledger", j.ledger},
                           {"start", j.start},
                           {"last", j.last},
                           {"end", j.end ? json(*j.end) : json(nullptr)},
                           {"status", j.status},
                           {"steps", j.steps},
                           {"step", j.step},
                           {"checkpoints", j.checkpoints}});
  }
  return out;
}

std::vector<std::string> row_cells(const Row& r) {
  return {r.key,
          std::to_string(r.jobs),
          format("%.3f", r.device_hours),
          r.kwh ? format("%.3f", *r.kwh) : "n/a",
          std::to_string(r.tokens),
          format("%.3e", r.model_flops),
          percent(r.avg_mfu),
          percent(r.goodput)};
}

std::string to_text(const Report& r) {
  const Options& o = r.options;
  std::string out = "usage report: " + std::to_string(r.records_in_window) +
                    (r.records_in_window == 1 ? " record" : " records") + ", window [" +
                    (o.from ? format_time(*o.from) : "start") + ", " +
                    (o.to ? format_time(*o.to) : "end") + ")" +
                    (o.project ? ", project " + *o.project : std::string()) + "\n";
  for (const std::string& g : group_names()) {
    std::vector<std::vector<std::string>> cells = {
        {g, "jobs", "device_hours", "kwh", "tokens", "model_flops", "avg_mfu", "goodput"}};
    for (const Row& row : r.groups.at(g)) cells.push_back(row_cells(row));
    out += '\n';
    out += text_table(cells, "lrrrrrrr");
  }
  out += '\n';
  out += text_table(
      {{"total", "jobs", "device_hours", "kwh", "tokens", "model_flops", "avg_mfu", "goodput"},
       row_cells(r.total)},
      "lrrrrrrr");
  std::vector<std::vector<std::string>> cells = {
      {"job", "user", "project", "start", "last", "devices", "steps", "step", "ckpts", "status"}};
  for (const JobDetail& j : r.jobs) {
    cells.push_back({j.job, j.user, j.project, j.start, j.last, std::to_string(j.devices),
                     std::to_string(j.steps), std::to_string(j.step), std::to_string(j.checkpoints),
                     j.status});
  }
  out += '\n';
  return out + text_table(cells, "lllllrrrrl");
}

}  // namespace peng::report
