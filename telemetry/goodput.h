// Goodput: the share of a job's wall time spent on training steps that advance the model
// for the first time. The rest is itemised:
//   start-up      job start -> first step (initialisation, resume load, peak probe)
//   checkpoint    seconds training waited for checkpoint saves
//   recomputed    steps a previous run of the same checkpoint folder had already reached
//                 (it ended after its last checkpoint; this run repeats them)
//   evaluation    validation and text samples
//   other         the remainder (metrics, end-of-job export, ...)
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

namespace peng {

struct GoodputAccount {
  double startup_s = 0;
  double productive_s = 0;
  double recomputed_s = 0;
  int64_t recomputed_steps = 0;
  double checkpoint_stall_s = 0;
  double evaluation_s = 0;

  // A step of `seconds`; `recomputed`: the step was already reached by an earlier run.
  void add_step(double seconds, bool recomputed);
  double goodput(double wall_s) const { return wall_s > 0 ? productive_s / wall_s : 0; }
  double other_s(double wall_s) const;
  // {"goodput", "wall_s", "productive_s", "lost_s": {"startup", "checkpoint", ...}}
  nlohmann::json to_json(double wall_s) const;
};

}  // namespace peng
