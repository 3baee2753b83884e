#include "peng/launch/environment.h"

#include <cstdlib>

#include "peng/core/error.h"

namespace peng {

namespace {
// The integer value of `name`, or `fallback` when unset.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  PENG_INPUT_CHECK(*end == '\0' && x >= 0 && x < (1L << 30), "environment variable ", name, "='", v,
                   "' is not a rank or size");
  return int(x);
}
bool has(const char* name) { return std::getenv(name) != nullptr; }
}  // namespace

LaunchEnv detect_launch_env() {
  LaunchEnv e;
  if (has("OMPI_COMM_WORLD_SIZE")) {
    e.launcher = "openmpi";
    e.world_size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    e.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    e.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
  } else if (has("PMI_SIZE") || has("PMIX_RANK")) {
    e.launcher = "pmi";
    e.world_size = env_int("PMI_SIZE", 1);
    e.rank = has("PMI_RANK") ? env_int("PMI_RANK", 0) : env_int("PMIX_RANK", 0);
    e.local_rank = env_int("MPI_LOCALRANKID", env_int("PMI_LOCAL_RANK", 0));
  } else if (has("SLURM_PROCID") && has("SLURM_NTASKS")) {
    e.launcher = "slurm";
    e.world_size = env_int("SLURM_NTASKS", 1);
    e.rank = env_int("SLURM_PROCID", 0);
    e.local_rank = env_int("SLURM_LOCALID", 0);
  }
  PENG_INPUT_CHECK(e.rank < e.world_size, "launcher (", e.launcher, ") reports rank ", e.rank,
                   " of world size ", e.world_size);
  return e;
}

}  // namespace peng
