// Prometheus text exposition format 0.0.4, for node_exporter's textfile collector
// (--collector.textfile.directory): a job writes its gauges and counters to a *.prom file
// there and node_exporter serves them with the machine's own metrics.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace peng {

struct PromSeries {
  std::vector<std::pair<std::string, std::string>> labels;  // name, value
  double value = 0;
};

struct PromMetric {
  std::string name;  // [a-zA-Z_:][a-zA-Z0-9_:]*, unique within one exposition
  std::string help;
  std::string type;  // "gauge" | "counter"
  std::vector<PromSeries> series;
};

// One `# HELP name help` line (backslash and newline escaped), one `# TYPE name type` line,
// then `name{k="v",...} value` per series (label values with backslash, double quote and
// newline escaped; no braces without labels). Values: shortest round-trip decimal, NaN,
// +Inf, -Inf. Invalid or duplicate metric names, invalid (or "__"-reserved) or repeated
// label names and unknown types are programming errors (peng::Error).
std::string format_prometheus(const std::vector<PromMetric>& metrics);

// Writes format_prometheus(metrics) to `path` atomically: the text goes to `path.tmp`, which
// is then renamed over `path` (core/io/atomic_file.h). node_exporter reads only *.prom files,
// so a `.prom` target is never seen half-written. Throws IoError on failure.
void write_prometheus_textfile(const std::filesystem::path& path,
                               const std::vector<PromMetric>& metrics);

}  // namespace peng
