#include "tests/util/test_util.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace peng::testing {

namespace fs = std::filesystem;

fs::path source_dir() { return PENG_SOURCE_DIR; }
fs::path reference_dir() { return fs::path(PENG_SHARED_DIR) / "reference"; }
fs::path peng_binary() { return fs::path(PENG_BIN_DIR) / "peng"; }

TempDir::TempDir() {
  std::random_device rd;
  path_ = fs::temp_directory_path() /
          ("peng_test_" + std::to_string(getpid()) + "_" + std::to_string(rd()));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

namespace {
std::string drain(int fd) {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  close(fd);
  return out;
}
}  // namespace

namespace {
// Runs argv[0] with argv (no shell), capturing stdout and stderr.
CommandResult run_command(const std::vector<std::string>& args,
                          const std::vector<std::pair<std::string, std::string>>& env) {
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) || pipe(err_pipe)) throw std::runtime_error("pipe failed");
  std::string bin = args.at(0);
  std::vector<char*> argv;
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close(out_pipe[0]);
    close(err_pipe[0]);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  CommandResult r;
  std::thread t([&] { r.stderr_text = drain(err_pipe[0]); });
  r.stdout_text = drain(out_pipe[0]);
  t.join();
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}
}  // namespace

CommandResult run_peng(const std::vector<std::string>& args,
                       const std::vector<std::pair<std::string, std::string>>& env) {
  std::vector<std::string> argv = {peng_binary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, env);
}

CommandResult run_mpi_peng(int np, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {
      PENG_MPIEXEC, "-n", std::to_string(np),  "--oversubscribe",     "--bind-to",
      "none",       "-x", "OMP_NUM_THREADS=1", peng_binary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, {{"OMPI_ALLOW_RUN_AS_ROOT", "1"},
                            {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"},
                            {"OMP_NUM_THREADS", "1"}});
}

std::vector<std::string> error_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream is(text);
  std::string line;
  while (std::getline(is, line)) {
    if (line.rfind("error:", 0) == 0) out.push_back(line);
  }
  return out;
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

}  // namespace peng::testing
