// The fault checks (contract in fault_checks.h).
#include "tests/util/fault_checks.h"

#include <signal.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "tests/util/test_util.h"

namespace peng::testing {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A 3-rank data-parallel job on the tiny reference model that would run for hours.
std::vector<std::string> long_job(const fs::path& dir, const std::string& timeout_s,
                                  const std::vector<std::string>& extra) {
  const fs::path ref = reference_dir() / "gpt2-tiny";
  return mpi_peng_argv(
      3, joined({"train", "--init-from", ref.string(), "--data", (ref / "tokens.bin").string(),
                 "--batch-size", "6", "--seq-len", "16", "--steps", "10000000", "--lr", "1e-4",
                 "--metrics-jsonl", (dir / "m.jsonl").string(), "--quiet", "--collective-timeout",
                 timeout_s},
                extra));
}

// Waits until the job has logged `steps` steps; the pid of world rank `rank`.
pid_t running_rank(BackgroundProcess& job, const fs::path& dir, size_t steps, int rank) {
  const auto t0 = Clock::now();
  while (lines_in(dir / "m.jsonl") < steps) {
    if (job.wait_for(0.1)) {
      ADD_FAILURE() << "job ended early:\n" << job.stdout_text() << job.stderr_text();
      return -1;
    }
    if (Clock::now() - t0 > std::chrono::seconds(120)) {
      ADD_FAILURE() << "job made no progress";
      return -1;
    }
  }
  std::vector<pid_t> pids =
      find_processes(dir.string(), "OMPI_COMM_WORLD_RANK=" + std::to_string(rank));
  EXPECT_EQ(pids.size(), 1u);
  return pids.empty() ? -1 : pids[0];
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

void expect_killed_rank_ends_the_job(const std::vector<std::string>& extra) {
  TempDir tmp;
  BackgroundProcess job(long_job(tmp.path(), "120", extra), tmp.path(), mpi_env());
  const pid_t victim = running_rank(job, tmp.path(), 3, 1);
  ASSERT_GT(victim, 0);
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  const auto t0 = Clock::now();
  std::optional<int> code = job.wait_for(90);
  ASSERT_TRUE(code) << "the job still runs 90 s after rank 1 was killed";
  EXPECT_LT(seconds_since(t0), 120) << "not inside the collective timeout";
  EXPECT_NE(*code, 0);
  const std::string out = job.stdout_text() + job.stderr_text();
  EXPECT_NE(out.find("rank 1"), std::string::npos) << out;
}

void expect_hung_rank_named(const std::vector<std::string>& extra) {
  TempDir tmp;
  BackgroundProcess job(long_job(tmp.path(), "3", extra), tmp.path(), mpi_env());
  const pid_t victim = running_rank(job, tmp.path(), 3, 1);
  ASSERT_GT(victim, 0);
  ASSERT_EQ(kill(victim, SIGSTOP), 0);  // alive but silent: no launcher notices
  const auto t0 = Clock::now();
  std::optional<int> code = job.wait_for(60);
  kill(victim, SIGCONT);
  ASSERT_TRUE(code) << "the job still runs 60 s after rank 1 hung (timeout 3 s)";
  EXPECT_NE(*code, 0);
  EXPECT_GT(seconds_since(t0), 2.5) << "ended before the timeout";
  const std::string err = job.stderr_text();
  std::vector<std::string> errors = error_lines(err);
  ASSERT_FALSE(errors.empty()) << err;
  bool named = false;
  for (const std::string& e : errors) {
    // The gradient all-reduce (dp, the tensor mesh), the loss sum (dp-control) or the per-step
    // stop-signal agreement (world).
    EXPECT_TRUE(e.find("on group dp (collective #") != std::string::npos ||
                e.find("on group dp-control (collective #") != std::string::npos ||
                e.find("on group world (collective #") != std::string::npos)
        << e;
    EXPECT_NE(e.find("did not complete within 3 s"), std::string::npos) << e;
    named = named || e.find("world rank 1 did not answer (dead, stopped or unreachable)") !=
                         std::string::npos;
  }
  EXPECT_TRUE(named) << err;
}

}  // namespace peng::testing
