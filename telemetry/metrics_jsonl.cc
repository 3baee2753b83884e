#include "peng/telemetry/metrics_jsonl.h"

#include <cerrno>
#include <cstring>

#include "peng/core/error.h"

namespace peng {

MetricsJsonl::MetricsJsonl(const std::string& path) : path_(path) {
  if (path.empty()) return;
  file_ = std::fopen(path.c_str(), "w");
  if (!file_) throw IoError("cannot write metrics file " + path + ": " + std::strerror(errno));
}

MetricsJsonl::~MetricsJsonl() {
  if (file_) std::fclose(file_);
}

void MetricsJsonl::write(const nlohmann::json& record) {
  if (!file_) return;
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    throw IoError("cannot write metrics file " + path_ + ": " + std::strerror(errno));
  }
}

}  // namespace peng
