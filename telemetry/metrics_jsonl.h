// Metrics JSONL sink: one JSON object per line, flushed per line so a crashed or
// running job's file is always readable up to its last complete line.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace peng {

class MetricsJsonl {
 public:
  MetricsJsonl() = default;
  // Opens (truncates) `path`; an empty path makes a sink that drops everything.
  explicit MetricsJsonl(const std::string& path);
  ~MetricsJsonl();
  MetricsJsonl(const MetricsJsonl&) = delete;
  MetricsJsonl& operator=(const MetricsJsonl&) = delete;

  void write(const nlohmann::json& record);

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace peng
