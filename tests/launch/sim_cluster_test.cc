// Multi-node launches on a simulated cluster (scripts/sim_cluster.sh): hosts are network
// namespaces on a bridge (198.18.0.0/24), each with its own hostname, and mpirun reaches
// them through Open MPI's rsh launcher, TCP only. Checks that 2 hosts x 2 ranks reproduce
// the PyTorch reference, that local ranks (hence device choice) are per host, and that a
// host whose link is cut ends the job with an `error:` line naming its ranks inside the
// collective timeout. Needs root and `ip netns`; elsewhere every test skips with the reason.
//
// Each test brings up its own cluster under a prefix unique to its process (ctest -j runs
// them side by side) and tears it down on every exit path; clusters left by a test that
// was killed are removed by the next one.
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "peng/launch/environment.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kPrintLaunchEnv[] = "PENG_SIM_TEST_PRINT_LAUNCH_ENV";
constexpr char kPrefixStem[] = "pengsim";

// Run as a rank on the cluster with kPrintLaunchEnv set (LocalRanksArePerHost), this
// binary prints where peng's launcher detection puts it and exits before gtest starts.
const bool kPrintedLaunchEnv = [] {
  if (!std::getenv(kPrintLaunchEnv)) return false;
  const LaunchEnv e = detect_launch_env();
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::printf("launch-env host=%s rank=%d local_rank=%d world=%d launcher=%s device=%d\n", host,
              e.rank, e.local_rank, e.world_size, e.launcher.c_str(), device_for(e, 2));
  std::fflush(stdout);
  std::_Exit(0);
}();

fs::path script() { return testing::source_dir() / "scripts" / "sim_cluster.sh"; }

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs `bash scripts/sim_cluster.sh args...`; after `timeout_s` its process group is killed
// and exit_code is -SIGKILL.
testing::CommandResult run_script(const std::vector<std::string>& args, double timeout_s) {
  testing::TempDir logs;
  std::vector<std::string> argv = {"/bin/bash", script().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  testing::CommandResult r;
  {
    testing::BackgroundProcess p(argv, logs.path());
    std::optional<int> code = p.wait_for(timeout_s);
    r.exit_code = code ? *code : -SIGKILL;
    if (!code) r.stderr_text = "(killed after " + std::to_string(timeout_s) + " s)\n";
  }  // the group is killed here if it still runs
  r.stdout_text = testing::read_file(logs / "stdout.txt");
  r.stderr_text += testing::read_file(logs / "stderr.txt");
  return r;
}

// True while `pid` is a live (not zombie) process of this test program.
bool test_process_alive(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line, name, state;
  while (std::getline(status, line)) {
    if (line.rfind("Name:", 0) == 0) name = line.substr(5);
    if (line.rfind("State:", 0) == 0) state = line.substr(6);
  }
  return name.find("sim_cluster_tes") != std::string::npos &&  // comm: 15 characters
         state.find('Z') == std::string::npos;
}

// Removes clusters of this test whose process is gone (killed by a ctest timeout, say).
void remove_stale_clusters() {
  const std::regex head(std::string(kPrefixStem) + "([0-9]+)-head");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    std::smatch m;
    const std::string name = e.path().filename();
    if (!std::regex_match(name, m, head)) continue;
    const pid_t pid = pid_t(std::stol(m[1]));
    if (pid == getpid() || test_process_alive(pid)) continue;
    run_script({"down", std::string(kPrefixStem) + m[1].str()}, 60);
  }
}

// A cluster of `hosts` hosts for the lifetime of the object. When it cannot be brought
// up, skip_reason() says why (the test should GTEST_SKIP with it).
class SimCluster {
 public:
  explicit SimCluster(int hosts) : prefix_(kPrefixStem + std::to_string(getpid())) {
    if (geteuid() != 0) {
      skip_reason_ = "the simulated cluster needs root (network namespaces)";
      return;
    }
    remove_stale_clusters();
    run_script({"down", prefix_}, 60);  // a leftover of a reused pid
    testing::CommandResult r = run_script({"up", std::to_string(hosts), prefix_}, 120);
    if (r.exit_code != 0) {
      skip_reason_ = "scripts/sim_cluster.sh up failed: " + r.stderr_text;
      run_script({"down", prefix_}, 60);
      return;
    }
    up_ = true;
  }
  ~SimCluster() {
    if (!up_) return;
    testing::CommandResult r = run_script({"down", prefix_}, 120);
    EXPECT_EQ(r.exit_code, 0) << "teardown of " << prefix_ << ": " << r.stderr_text;
  }
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  const std::string& skip_reason() const { return skip_reason_; }
  const std::string& prefix() const { return prefix_; }
  std::string host(int i) const { return prefix_ + "-h" + std::to_string(i); }

  // The command line of `mpirun mpirun_args...` across the cluster.
  std::vector<std::string> mpirun_argv(const std::vector<std::string>& mpirun_args) const {
    std::vector<std::string> argv = {"/bin/bash", script().string(), "-p", prefix_, "run", "--"};
    argv.insert(argv.end(), mpirun_args.begin(), mpirun_args.end());
    return argv;
  }
  // `mpirun -np 4 (2 per host) -x OMP_NUM_THREADS=1 --bind-to none peng args...`
  std::vector<std::string> peng_argv(const std::vector<std::string>& peng_args) const {
    std::vector<std::string> a = {"-np", "4", "-x", "OMP_NUM_THREADS=1", "--bind-to", "none"};
    a.push_back(testing::peng_binary().string());
    a.insert(a.end(), peng_args.begin(), peng_args.end());
    return mpirun_argv(a);
  }
  testing::CommandResult run(const std::vector<std::string>& args, double timeout_s) const {
    std::vector<std::string> a = {"-p", prefix_};
    a.insert(a.end(), args.begin(), args.end());
    return run_script(a, timeout_s);
  }

 private:
  std::string prefix_;
  std::string skip_reason_;
  bool up_ = false;
};

#define SIM_CLUSTER_OR_SKIP(name, hosts) \
  SimCluster name(hosts);                \
  if (!name.skip_reason().empty()) GTEST_SKIP() << name.skip_reason()

// The script refuses what it cannot or must not do, with an `error:` line.
TEST(SimClusterScript, RefusesBadArgumentsWithAnErrorLine) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"up", "0", "pengsimx"}, "host count '0' must be 1..64"},
      {{"up", "2", "Bad/Prefix"}, "bad prefix 'Bad/Prefix'"},
      {{"-p", "pengsimnone", "link-down", "h1"}, "sim_cluster.sh: "},  // not root / not up
      {{"frobnicate"}, "unknown subcommand 'frobnicate'"},
  };
  for (const Case& c : cases) {
    testing::CommandResult r = run_script(c.args, 60);
    EXPECT_NE(r.exit_code, 0) << c.args[0];
    std::vector<std::string> errors = testing::error_lines(r.stderr_text);
    ASSERT_EQ(errors.size(), 1u) << r.stderr_text;
    EXPECT_NE(errors[0].find(c.message), std::string::npos) << errors[0];
  }
  // An unprivileged user is refused before anything is created.
  if (geteuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0) {
    testing::TempDir logs;
    testing::BackgroundProcess p(
        {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/bash",
         script().string(), "up", "2", "pengsimnoroot"},
        logs.path());
    std::optional<int> code = p.wait_for(60);
    ASSERT_TRUE(code);
    EXPECT_NE(*code, 0);
    EXPECT_NE(p.stderr_text().find("error: sim_cluster.sh: needs root"), std::string::npos)
        << p.stderr_text();
    EXPECT_FALSE(fs::exists("/run/netns/pengsimnoroot-head"));
  }
}

// 2 hosts x 2 ranks, dp 4, reproduce the PyTorch reference step by step.
TEST(SimCluster, TwoHostsReproduceTheReference) {
  SIM_CLUSTER_OR_SKIP(cluster, 2);
  const testing::ReferenceRun ref = testing::load_reference_run("gpt2-tiny");  // B = 4
  testing::TempDir tmp;
  std::vector<std::string> args = {"train"};
  for (const auto& a : ref.train_args()) args.push_back(a);
  args.insert(args.end(), {"--metrics-jsonl", (tmp / "m.jsonl").string(), "--dp", "4", "--quiet"});
  testing::TempDir logs;
  testing::BackgroundProcess job(cluster.peng_argv(args), logs.path());
  std::optional<int> code = job.wait_for(180);
  ASSERT_TRUE(code) << "still running after 180 s:\n" << job.stdout_text() << job.stderr_text();
  ASSERT_EQ(*code, 0) << job.stdout_text() << job.stderr_text();
  EXPECT_NE(job.stdout_text().find("dp 4"), std::string::npos) << job.stdout_text();
  std::vector<double> loss, norm;
  testing::read_metrics_jsonl(tmp / "m.jsonl", loss, norm);
  testing::expect_matches_reference(ref, loss, norm);
}

// Ranks 0,1 land on host 0 and 2,3 on host 1, and each host numbers its own ranks 0,1 (the
// local rank, by which a rank picks its GPU on a multi-GPU node), as peng's launcher
// detection (launch/environment.cc) sees it.
TEST(SimCluster, LocalRanksArePerHost) {
  SIM_CLUSTER_OR_SKIP(cluster, 2);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  testing::TempDir logs;
  testing::BackgroundProcess job(
      cluster.mpirun_argv({"-np", "4", "-x", std::string(kPrintLaunchEnv) + "=1", self}),
      logs.path());
  std::optional<int> code = job.wait_for(120);
  ASSERT_TRUE(code) << job.stderr_text();
  ASSERT_EQ(*code, 0) << job.stdout_text() << job.stderr_text();
  const std::regex line_re(
      "launch-env host=(\\S+) rank=(\\d+) local_rank=(\\d+) world=(\\d+) launcher=(\\S+) "
      "device=(\\d+)");
  std::map<std::string, std::set<int>> local_ranks;  // host -> local ranks
  std::map<int, std::string> host_of;                // world rank -> host
  std::istringstream lines(job.stdout_text());
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, line_re)) continue;
    EXPECT_EQ(m[4], "4") << line;
    EXPECT_EQ(m[5], "openmpi") << line;
    EXPECT_TRUE(local_ranks[m[1]].insert(std::stoi(m[3])).second) << "duplicate: " << line;
    EXPECT_EQ(m[6], m[3]) << "on 2-GPU hosts each rank drives the GPU of its local rank: " << line;
    host_of[std::stoi(m[2])] = m[1];
  }
  const std::set<int> both = {0, 1};
  EXPECT_EQ(local_ranks, (std::map<std::string, std::set<int>>{{cluster.host(0), both},
                                                               {cluster.host(1), both}}))
      << job.stdout_text();
  EXPECT_EQ(
      host_of,
      (std::map<int, std::string>{
          {0, cluster.host(0)}, {1, cluster.host(0)}, {2, cluster.host(1)}, {3, cluster.host(1)}}))
      << job.stdout_text();
}

// World ranks an error line names: "rank 3", "ranks 2, 3", "ranks 2 and 3", "rank 2 ... rank 3".
std::set<int> ranks_named(const std::string& line) {
  std::set<int> out;
  const std::regex list("ranks?\\s+((?:\\d+(?:\\s*(?:,|and|&)\\s*)?)+)", std::regex::icase);
  const std::regex number("\\d+");
  for (auto it = std::sregex_iterator(line.begin(), line.end(), list); it != std::sregex_iterator();
       ++it) {
    const std::string numbers = (*it)[1];
    for (auto n = std::sregex_iterator(numbers.begin(), numbers.end(), number);
         n != std::sregex_iterator(); ++n) {
      out.insert(std::stoi(n->str()));
    }
  }
  return out;
}

// Cutting host 1's link mid-run: ranks 0 and 1 wait in an all-reduce for ranks 2 and 3
// that can no longer answer; the collective timeout (10 s) turns that into an `error:`
// line naming them, and the job ends with a non-zero exit instead of hanging.
TEST(SimCluster, CutLinkEndsTheJobNamingTheUnreachableRanks) {
  SIM_CLUSTER_OR_SKIP(cluster, 2);
  constexpr int kCollectiveTimeout = 10;
  constexpr double kBound = 90;
  const testing::ReferenceRun ref = testing::load_reference_run("gpt2-tiny");
  testing::TempDir tmp;
  std::vector<std::string> args = {"train"};
  for (const auto& a : ref.train_args(10000000)) args.push_back(a);  // would run for hours
  args.insert(args.end(), {"--metrics-jsonl", (tmp / "m.jsonl").string(), "--dp", "4", "--quiet",
                           "--collective-timeout", std::to_string(kCollectiveTimeout)});
  testing::TempDir logs;
  testing::BackgroundProcess job(cluster.peng_argv(args), logs.path());
  const auto started = Clock::now();
  while (testing::lines_in(tmp / "m.jsonl") < 5) {
    ASSERT_FALSE(job.wait_for(0.1)) << "the job ended early:\n"
                                    << job.stdout_text() << job.stderr_text();
    ASSERT_LT(seconds_since(started), 120) << "no training steps after 120 s:\n"
                                           << job.stdout_text() << job.stderr_text();
  }
  testing::CommandResult cut = cluster.run({"link-down", "h1"}, 30);
  ASSERT_EQ(cut.exit_code, 0) << cut.stderr_text;
  const auto t0 = Clock::now();
  std::optional<int> code = job.wait_for(kBound);
  const double took = seconds_since(t0);
  const std::string out = job.stdout_text() + job.stderr_text();
  ASSERT_TRUE(code) << "the job still runs " << kBound << " s after host 1's link was cut "
                    << "(collective timeout " << kCollectiveTimeout
                    << " s); it is killed now. Output:\n"
                    << out;
  EXPECT_NE(*code, 0) << out;
  EXPECT_LT(took, kBound);
  bool named = false;
  for (const std::string& line : testing::error_lines(out)) {
    const std::string lower = [&] {
      std::string s = line;
      for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
      return s;
    }();
    const bool timeout =
        lower.find("timeout") != std::string::npos ||
        lower.find("timed out") != std::string::npos ||
        lower.find("within " + std::to_string(kCollectiveTimeout) + " s") != std::string::npos;
    const std::set<int> ranks = ranks_named(line);
    if (timeout && ranks.count(2) && ranks.count(3)) named = true;
  }
  EXPECT_TRUE(named) << "no `error:` line names the collective timeout (\"timeout\", \"timed "
                     << "out\" or \"within " << kCollectiveTimeout
                     << " s\") and world ranks 2 and 3 "
                     << "(ended after " << took << " s, exit " << *code << "):\n"
                     << out;
}

}  // namespace
}  // namespace peng
