#include "peng/telemetry/prometheus.h"

#include <charconv>
#include <cmath>
#include <set>

#include "peng/core/error.h"
#include "peng/core/io/atomic_file.h"

namespace peng {
namespace {

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// [a-zA-Z_:][a-zA-Z0-9_:]* (metric) or [a-zA-Z_][a-zA-Z0-9_]* (label).
bool valid_name(const std::string& s, bool colon_ok) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = is_name_start(c) || (colon_ok && c == ':') || (i > 0 && is_digit(c));
    if (!ok) return false;
  }
  return true;
}

// Backslash and newline always; the double quote too in label values.
std::string escape(const std::string& s, bool quote) {
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round-trip
  return std::string(buf, end);
}

}  // namespace

std::string format_prometheus(const std::vector<PromMetric>& metrics) {
  std::string out;
  std::set<std::string> seen;
  for (const PromMetric& m : metrics) {
    PENG_CHECK(valid_name(m.name, true), "invalid Prometheus metric name '", m.name, "'");
    PENG_CHECK(seen.insert(m.name).second, "Prometheus metric '", m.name, "' given twice");
    PENG_CHECK(m.type == "gauge" || m.type == "counter", "Prometheus metric '", m.name,
               "': type must be gauge or counter, got '", m.type, "'");
    out += "# HELP " + m.name + " " + escape(m.help, false) + "\n";
    out += "# TYPE " + m.name + " " + m.type + "\n";
    for (const PromSeries& s : m.series) {
      out += m.name;
      std::set<std::string> label_names;
      for (size_t i = 0; i < s.labels.size(); ++i) {
        const auto& [k, v] = s.labels[i];
        PENG_CHECK(valid_name(k, false) && !k.starts_with("__"), "Prometheus metric '", m.name,
                   "': invalid label name '", k, "'");
        PENG_CHECK(label_names.insert(k).second, "Prometheus metric '", m.name, "': label '", k,
                   "' given twice");
        out += i == 0 ? '{' : ',';
        out += k;
        out += "=\"";
        out += escape(v, true);
        out += '"';
      }
      if (!s.labels.empty()) out += "}";
      out += ' ';
      out += format_value(s.value);
      out += '\n';
    }
  }
  return out;
}

void write_prometheus_textfile(const std::filesystem::path& path,
                               const std::vector<PromMetric>& metrics) {
  // Rewritten every few steps: atomic for node_exporter, no fsync (the next write comes).
  write_file_atomic(path, format_prometheus(metrics), Durability::kAtomicOnly);
}

}  // namespace peng
