// Where this process sits in the job, as the launcher tells it through the environment:
// Open MPI (OMPI_COMM_WORLD_*), PMI/PMIx (PMI_RANK/PMI_SIZE, PMIX_RANK), Slurm
// (SLURM_PROCID/SLURM_LOCALID/SLURM_NTASKS). Without a launcher: rank 0 of 1.
#pragma once

#include <string>

namespace peng {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string launcher = "none";  // "openmpi", "pmi", "slurm", "none"
};

// Throws InputError when a variable is present but not a number.
LaunchEnv detect_launch_env();

// The GPU a rank drives on a node with `device_count` GPUs: its local rank (one rank per
// GPU, as NCCL requires; more ranks than GPUs share them round-robin, for the host-staged
// path). -1 without devices.
inline int device_for(const LaunchEnv& env, int device_count) {
  return device_count > 0 ? env.local_rank % device_count : -1;
}

}  // namespace peng
