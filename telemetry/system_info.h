// Facts about the process and its job for the ledger and the sinks.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace peng {

// The job's id from the launcher: Slurm "slurm-<SLURM_JOB_ID>[.<SLURM_STEP_ID>]-<start>",
// Open MPI "ompi-<jobid>-<start>", else "peng-<start>-<pid>", where <start> is `start` as
// YYYYMMDDTHHMMSSZ (a requeued Slurm job keeps its id; Open MPI's ids repeat across
// mpirun invocations and hosts).
std::string job_id_from_env(std::chrono::system_clock::time_point start);
std::string user_name();  // the login name of the real user id ($USER when unknown)
std::string host_name();
// "2026-11-23T10:15:00Z"
std::string utc_iso8601(std::chrono::system_clock::time_point t);
// The peak resident set size of this process in bytes (getrusage ru_maxrss).
int64_t memory_high_water_bytes();

}  // namespace peng
