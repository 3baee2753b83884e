// Helpers shared by peng's tests: paths, running the peng CLI, temp dirs, JSON.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace peng::testing {

std::filesystem::path source_dir();     // the repository root
std::filesystem::path reference_dir();  // ../shared/reference
// A gtest parameter name for a reference case run on `np` ranks with `flags`
// ("llamatiny_np2_tp2"): letters and digits, single underscores.
std::string case_name(const std::string& name, int np, const std::vector<std::string>& flags);
std::filesystem::path peng_binary();  // build/bin/peng

// A fresh directory under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string stdout_text;
  std::string stderr_text;
};

// Runs argv[0] (a path, or a name looked up in PATH) with argv (no shell), capturing stdout
// and stderr; `env` adds NAME=VALUE pairs to the child's environment.
CommandResult run_command(const std::vector<std::string>& args,
                          const std::vector<std::pair<std::string, std::string>>& env = {});

// Runs `peng` with the given arguments (no shell), capturing stdout and stderr; `env`
// adds NAME=VALUE pairs to the child's environment.
CommandResult run_peng(const std::vector<std::string>& args,
                       const std::vector<std::pair<std::string, std::string>>& env = {});

// `a` followed by `b`: command lines built from parts.
std::vector<std::string> joined(std::vector<std::string> a, const std::vector<std::string>& b);

// Runs `mpirun -n np --oversubscribe peng args...` (OpenMP at one thread per rank).
CommandResult run_mpi_peng(int np, const std::vector<std::string>& args);
// The command line and environment run_mpi_peng uses.
std::vector<std::string> mpi_peng_argv(int np, const std::vector<std::string>& args);
std::vector<std::pair<std::string, std::string>> mpi_env();

// A command running in the background in its own process group, stdout and stderr going
// to files in `log_dir`. The destructor kills the whole group if it still runs, so a
// failing test never leaves processes behind.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::filesystem::path& log_dir,
                    const std::vector<std::pair<std::string, std::string>>& env = {});
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  // Waits up to `seconds` for the exit; the exit code (-signal when killed by one), or
  // nullopt while it still runs.
  std::optional<int> wait_for(double seconds);
  std::string stdout_text() const;
  std::string stderr_text() const;
  // Sends `sig` to the command itself (not its group: mpirun forwards what it receives).
  void signal(int sig) const;

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::filesystem::path out_, err_;
};

// Pids of live processes whose command line contains `needle` and whose environment holds
// `env_entry` (e.g. "OMPI_COMM_WORLD_RANK=1").
std::vector<pid_t> find_processes(const std::string& needle, const std::string& env_entry);

// The message of the InputError `f` throws ("" when it throws none; other exceptions pass).
std::string input_error_of(const std::function<void()>& f);

// The lines of stderr that start with "error:".
std::vector<std::string> error_lines(const std::string& stderr_text);

void write_file(const std::filesystem::path& p, const std::string& bytes);
// Lines in the file (0 when it does not exist yet): how far a job's metrics JSONL got.
size_t lines_in(const std::filesystem::path& p);
std::string read_file(const std::filesystem::path& p);

// A reference run of ../shared/reference/NAME (expected.json): the expected per-step loss
// and gradient norm, and the `peng train` flags of DESIGN.md's reference-run contract.
struct ReferenceRun {
  std::string name;
  int batch_size = 0;
  int steps = 0;
  double lr = 0;
  std::vector<double> loss, grad_norm;
  std::vector<std::string> flags;  // --init-from DIR ... --grad-clip G: every flag but --steps
  // `flags` and --steps N (the reference's own step count when N < 0).
  std::vector<std::string> train_args(int n = -1) const;
};
// Looks in tests/reference/ (cases kept with the tests), then in ../shared/reference/.
ReferenceRun load_reference_run(const std::string& name);

// Per-step loss and gradient norm of a metrics JSONL (validation lines skipped); EXPECTs
// the steps to be 0, 1, 2, ... in order.
void read_metrics_jsonl(const std::filesystem::path& p, std::vector<double>& loss,
                        std::vector<double>& grad_norm);

// step -> the metrics line's raw "loss" and "grad_norm" text, for bit-exact comparisons
// (validation lines skipped).
std::map<int, std::pair<std::string, std::string>> raw_step_metrics(
    const std::filesystem::path& jsonl);

// EXPECTs DESIGN.md's tolerances at every step: loss within 1e-4 relative, gradient norm
// within 1e-3 relative, and as many steps as the reference.
void expect_matches_reference(const ReferenceRun& ref, const std::vector<double>& loss,
                              const std::vector<double>& grad_norm);
// The same for a run resumed at step `from`: its metrics JSONL holds steps from .. end.
void expect_resumed_matches_reference(const ReferenceRun& ref, const std::filesystem::path& jsonl,
                                      int64_t from);

// One run of a reference case: `np` ranks (1: no mpirun) with extra `peng train` flags.
struct LayoutCase {
  std::string name;
  int np = 1;
  std::vector<std::string> flags;
};
void PrintTo(const LayoutCase& c, std::ostream* os);
// `args` under the case's ranks (its flags are the caller's to add).
CommandResult run_case(const LayoutCase& c, const std::vector<std::string>& args);
// The case's reference trained under its ranks and flags (and `extra` flags): every step
// matches the reference (expect_matches_reference).
void expect_case_matches_reference(const LayoutCase& c, const std::vector<std::string>& extra = {});
// `ref` trained to step `at` under `save` (checkpointing), then resumed under each of
// `resumes` to the end: every resumed step matches the reference.
void expect_resumes_match_reference(const ReferenceRun& ref, const LayoutCase& save,
                                    const std::vector<LayoutCase>& resumes, int at = 5);

}  // namespace peng::testing
