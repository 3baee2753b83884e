#include "tests/util/test_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "peng/core/error.h"

namespace peng::testing {

namespace fs = std::filesystem;

namespace {
// A compiled-in path, unless the environment moves it (a test bundle run on another
// machine, scripts/gpu_check.sh: PENG_TEST_SOURCE_DIR, PENG_TEST_SHARED_DIR, PENG_TEST_BIN_DIR,
// PENG_TEST_MPIEXEC).
fs::path relocatable(const char* env, const char* built) {
  const char* moved = std::getenv(env);
  return moved && *moved ? fs::path(moved) : fs::path(built);
}
}  // namespace

fs::path source_dir() { return relocatable("PENG_TEST_SOURCE_DIR", PENG_SOURCE_DIR); }
fs::path reference_dir() {
  return relocatable("PENG_TEST_SHARED_DIR", PENG_SHARED_DIR) / "reference";
}
fs::path peng_binary() { return relocatable("PENG_TEST_BIN_DIR", PENG_BIN_DIR) / "peng"; }

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
    execvp(bin.c_str(), argv.data());
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

CommandResult run_peng(const std::vector<std::string>& args,
                       const std::vector<std::pair<std::string, std::string>>& env) {
  std::vector<std::string> argv = {peng_binary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, env);
}

std::vector<std::string> mpi_peng_argv(int np, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {relocatable("PENG_TEST_MPIEXEC", PENG_MPIEXEC).string(),
                                   "-n",
                                   std::to_string(np),
                                   "--oversubscribe",
                                   "--bind-to",
                                   "none",
                                   "-x",
                                   "OMP_NUM_THREADS=1",
                                   peng_binary().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::vector<std::pair<std::string, std::string>> mpi_env() {
  return {{"OMPI_ALLOW_RUN_AS_ROOT", "1"},
          {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"},
          {"OMP_NUM_THREADS", "1"}};
}

CommandResult run_mpi_peng(int np, const std::vector<std::string>& args) {
  return run_command(mpi_peng_argv(np, args), mpi_env());
}

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& args, const fs::path& log_dir,
                                     const std::vector<std::pair<std::string, std::string>>& env)
    : out_(log_dir / "stdout.txt"), err_(log_dir / "stderr.txt") {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  write_file(out_, "");  // the logs exist (empty) as soon as the constructor returns
  write_file(err_, "");
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    int out = open(out_.c_str(), O_WRONLY | O_TRUNC);
    int err = open(err_.c_str(), O_WRONLY | O_TRUNC);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(out, 1);
    dup2(err, 2);
    dup2(devnull, 0);
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    execv(argv[0], argv.data());
    _exit(127);
  }
  setpgid(pid_, pid_);  // also here: no race with an early kill
}

BackgroundProcess::~BackgroundProcess() {
  if (exit_code_ || pid_ <= 0) return;
  kill(-pid_, SIGCONT);
  kill(-pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

std::optional<int> BackgroundProcess::wait_for(double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!exit_code_) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      kill(-pid_, SIGKILL);  // anything the command left in its group
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return exit_code_;
}

std::string BackgroundProcess::stdout_text() const { return read_file(out_); }
void BackgroundProcess::signal(int sig) const {
  if (!exit_code_) ::kill(pid_, sig);
}
std::string BackgroundProcess::stderr_text() const { return read_file(err_); }

std::vector<pid_t> find_processes(const std::string& needle, const std::string& env_entry) {
  std::vector<pid_t> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmd(entry.path() / "cmdline", std::ios::binary),
        env(entry.path() / "environ", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(cmd)), {});
    std::string environ((std::istreambuf_iterator<char>(env)), {});
    if (cmdline.find(needle) == std::string::npos) continue;
    const std::string nul(1, '\0');
    if ((nul + environ).find(nul + env_entry + nul) == std::string::npos) continue;
    out.push_back(pid_t(std::stoi(name)));
  }
  return out;
}

std::string input_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
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

size_t lines_in(const fs::path& p) {
  if (!fs::exists(p)) return 0;
  std::istringstream is(read_file(p));
  size_t n = 0;
  for (std::string line; std::getline(is, line);) ++n;
  return n;
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

std::string case_name(const std::string& name, int np, const std::vector<std::string>& flags) {
  std::string n = name + "_np" + std::to_string(np);
  for (const std::string& f : flags) n += "_" + f;
  std::string out;
  for (char ch : n) {
    if (std::isalnum(static_cast<unsigned char>(ch))) out += ch;
    if (ch == '_' && !out.empty() && out.back() != '_') out += ch;
  }
  return out;
}

std::vector<std::string> joined(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

ReferenceRun load_reference_run(const std::string& name) {
  const fs::path own = source_dir() / "tests" / "reference" / name;
  const fs::path dir = fs::exists(own) ? own : reference_dir() / name;
  const nlohmann::json j = nlohmann::json::parse(read_file(dir / "expected.json"));
  const nlohmann::json& c = j.at("config");
  ReferenceRun r;
  r.name = name;
  r.batch_size = c.at("batch_size").get<int>();
  r.steps = c.at("steps").get<int>();
  r.lr = c.at("lr").get<double>();
  r.loss = j.at("loss").get<std::vector<double>>();
  r.grad_norm = j.at("grad_norm").get<std::vector<double>>();
  r.flags = {"--init-from",    dir.string(),
             "--data",         (dir / "tokens.bin").string(),
             "--batch-size",   std::to_string(r.batch_size),
             "--seq-len",      std::to_string(c.at("context_length").get<int>()),
             "--lr",           c.at("lr").dump(),
             "--lr-schedule",  "constant",
             "--weight-decay", c.at("weight_decay").dump(),
             "--grad-clip",    c.at("grad_clip").dump()};
  return r;
}

std::vector<std::string> ReferenceRun::train_args(int n) const {
  std::vector<std::string> a = flags;
  a.insert(a.end(), {"--steps", std::to_string(n < 0 ? steps : n)});
  return a;
}

void read_metrics_jsonl(const fs::path& p, std::vector<double>& loss,
                        std::vector<double>& grad_norm) {
  std::istringstream lines(read_file(p));
  std::string line;
  while (std::getline(lines, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (!j.contains("loss")) continue;
    EXPECT_EQ(j.at("step").get<size_t>(), loss.size()) << p;
    loss.push_back(j.at("loss").get<double>());
    grad_norm.push_back(j.at("grad_norm").get<double>());
  }
}

void expect_resumed_matches_reference(const ReferenceRun& ref, const fs::path& jsonl,
                                      int64_t from) {
  std::map<int64_t, std::pair<double, double>> steps;  // step -> (loss, grad norm)
  std::istringstream lines(read_file(jsonl));
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) steps[j["step"]] = {j["loss"], j["grad_norm"]};
  }
  ASSERT_EQ(steps.size(), size_t(ref.steps - from)) << ref.name << " " << jsonl;
  for (const auto& [s, m] : steps) {
    ASSERT_GE(s, from) << jsonl;
    EXPECT_NEAR(m.first, ref.loss[size_t(s)], 1e-4 * ref.loss[size_t(s)]) << ref.name << " " << s;
    EXPECT_NEAR(m.second, ref.grad_norm[size_t(s)], 1e-3 * ref.grad_norm[size_t(s)])
        << ref.name << " " << s;
  }
}

void PrintTo(const LayoutCase& c, std::ostream* os) { *os << case_name(c.name, c.np, c.flags); }

std::map<int, std::pair<std::string, std::string>> raw_step_metrics(
    const std::filesystem::path& jsonl) {
  std::map<int, std::pair<std::string, std::string>> out;
  std::ifstream in(jsonl);
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) out[j["step"]] = {j["loss"].dump(), j["grad_norm"].dump()};
  }
  return out;
}

CommandResult run_case(const LayoutCase& c, const std::vector<std::string>& args) {
  return c.np == 1 ? run_peng(args) : run_mpi_peng(c.np, args);
}

void expect_case_matches_reference(const LayoutCase& c, const std::vector<std::string>& extra) {
  const ReferenceRun ref = load_reference_run(c.name);
  TempDir tmp;
  const CommandResult r =
      run_case(c, joined(joined({"train"}, ref.train_args()),
                         joined(joined(c.flags, extra),
                                {"--quiet", "--metrics-jsonl", (tmp / "m.jsonl").string()})));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  std::vector<double> loss, norm;
  read_metrics_jsonl(tmp / "m.jsonl", loss, norm);
  expect_matches_reference(ref, loss, norm);
}

void expect_resumes_match_reference(const ReferenceRun& ref, const LayoutCase& save,
                                    const std::vector<LayoutCase>& resumes, int at) {
  TempDir tmp;
  const fs::path dir = tmp / "ckpt";
  CommandResult r =
      run_case(save, joined(joined({"train"}, ref.train_args(at)),
                            joined(save.flags, {"--quiet", "--checkpoint-dir", dir.string()})));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  for (const LayoutCase& resume : resumes) {
    const fs::path jsonl = tmp / ("resumed" + std::to_string(resume.np) + ".jsonl");
    r = run_case(resume, joined(joined({"train"}, ref.train_args()),
                                joined(resume.flags, {"--quiet", "--resume", dir.string(),
                                                      "--metrics-jsonl", jsonl.string()})));
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    expect_resumed_matches_reference(ref, jsonl, at);
  }
}

void expect_matches_reference(const ReferenceRun& ref, const std::vector<double>& loss,
                              const std::vector<double>& grad_norm) {
  ASSERT_EQ(loss.size(), ref.loss.size()) << ref.name;
  ASSERT_EQ(grad_norm.size(), ref.grad_norm.size()) << ref.name;
  for (size_t s = 0; s < loss.size(); ++s) {
    EXPECT_NEAR(loss[s], ref.loss[s], 1e-4 * std::abs(ref.loss[s]))
        << ref.name << ": loss at step " << s;
    EXPECT_NEAR(grad_norm[s], ref.grad_norm[s], 1e-3 * std::abs(ref.grad_norm[s]))
        << ref.name << ": grad norm at step " << s;
  }
}

}  // namespace peng::testing
