// Helpers shared by peng's tests: paths, running the peng CLI, temp dirs, JSON.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace peng::testing {

std::filesystem::path source_dir();     // the repository root
std::filesystem::path reference_dir();  // ../shared/reference
std::filesystem::path peng_binary();    // build/bin/peng

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

// Runs `peng` with the given arguments (no shell), capturing stdout and stderr; `env`
// adds NAME=VALUE pairs to the child's environment.
CommandResult run_peng(const std::vector<std::string>& args,
                       const std::vector<std::pair<std::string, std::string>>& env = {});

// Runs `mpirun -n np --oversubscribe peng args...` (OpenMP at one thread per rank).
CommandResult run_mpi_peng(int np, const std::vector<std::string>& args);

// The lines of stderr that start with "error:".
std::vector<std::string> error_lines(const std::string& stderr_text);

void write_file(const std::filesystem::path& p, const std::string& bytes);
std::string read_file(const std::filesystem::path& p);

}  // namespace peng::testing
