// custom_schedule: a pipeline schedule written outside peng, registered by name and trained
// with through `peng train`'s arguments (--pp-schedule eager-1f1b).
//
// eager-1f1b is 1F1B with one more forward in flight on every rank: rank r of pp runs
// min(pp - r, m) warm-up forwards (1F1B: pp - r - 1), then alternates forward and backward,
// then drains. The last stage no longer waits for each backward's gradient to come back
// before its next forward, at the cost of one micro-batch's activations per rank. The
// function gives the compute order only; with_transfers adds the sends and receives, and
// peng checks the result (check_schedule) before anything runs.
//
//   mpirun -np 2 custom_schedule --pp 2 --pp-schedule eager-1f1b --micro-batch-size 1 ...
//   custom_schedule --print PP MICRO_BATCHES      the schedule, as `peng schedule` prints it
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <peng/launch/config.h>
#include <peng/launch/trainer.h>
#include <peng/parallel/mpi/mpi_communicator.h>
#include <peng/parallel/pipeline/schedule_registry.h>

using namespace peng;

namespace {

// Rank r's forwards and backwards (one model chunk per rank).
std::vector<Action> eager_order(int pp, int m, int r) {
  std::vector<Action> out;
  const auto fwd = [&](int i) { out.push_back({Action::kForward, i, 0, -1}); };
  const auto bwd = [&](int i) { out.push_back({Action::kBackward, i, 0, -1}); };
  const int warmup = std::min(pp - r, m);
  for (int i = 0; i < warmup; ++i) fwd(i);
  for (int i = 0; i < m - warmup; ++i) {
    fwd(warmup + i);
    bwd(i);
  }
  for (int i = m - warmup; i < m; ++i) bwd(i);
  return out;
}

void register_eager_1f1b() {
  register_schedule({.name = "eager-1f1b",
                     .description = "1F1B with one more forward in flight per rank",
                     .check =
                         [](int pp, int, int m) {
                           PENG_INPUT_CHECK(m >= pp, "eager-1f1b needs at least pp (", pp,
                                            ") micro-batches, got ", m);
                         },
                     .build =
                         [](int pp, int v, int m) {
                           Schedule computes(pp);
                           for (int r = 0; r < pp; ++r) computes[r] = eager_order(pp, m, r);
                           return with_transfers(computes, pp, v);
                         }});
}

}  // namespace

int main(int argc, char** argv) {
  try {
    register_eager_1f1b();
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args[0] == "--print") {
      PENG_INPUT_CHECK(args.size() == 3, "usage: custom_schedule --print PP MICRO_BATCHES");
      const int pp = std::stoi(args[1]), m = std::stoi(args[2]);
      const Schedule s = build_schedule("eager-1f1b", pp, 1, m);  // checked
      std::printf("%s", format_schedule(s).c_str());
      const ScheduleCheck c = check_schedule(s, pp, 1, m, {.send_mode = SendMode::kBuffered});
      std::printf("bubble with backward = 2 x forward: %.3f of rank-time\n", c.idle_fraction());
      return 0;
    }
    train(parse_train_args(args));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    abort_job(1);
    return 1;
  }
}
