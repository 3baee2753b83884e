#include "peng/telemetry/system_info.h"

#include <pwd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

namespace peng {

namespace {
std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string utc(std::chrono::system_clock::time_point t, const char* format) {
  const std::time_t s = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}
std::string compact_utc(std::chrono::system_clock::time_point t) {
  return utc(t, "%Y%m%dT%H%M%SZ");
}
}  // namespace

std::string job_id_from_env(std::chrono::system_clock::time_point start) {
  if (const std::string slurm = env_or("SLURM_JOB_ID", ""); !slurm.empty()) {
    const std::string step = env_or("SLURM_STEP_ID", "");
    return "slurm-" + slurm + (step.empty() ? "" : "." + step) + "-" + compact_utc(start);
  }
  if (const std::string ompi = env_or("OMPI_MCA_ess_base_jobid", ""); !ompi.empty()) {
    return "ompi-" + ompi + "-" + compact_utc(start);
  }
  return "peng-" + compact_utc(start) + "-" + std::to_string(getpid());
}

std::string user_name() {
  if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_name) return pw->pw_name;
  return env_or("USER", "uid-" + std::to_string(getuid()));
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

std::string utc_iso8601(std::chrono::system_clock::time_point t) {
  return utc(t, "%Y-%m-%dT%H:%M:%SZ");
}

int64_t memory_high_water_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_maxrss) * 1024;  // KiB on Linux
}

}  // namespace peng
