// Pipeline schedules by name: the built-in ones ("gpipe", "1f1b", "interleaved") and those a
// program registers before it builds its Trainer. `--pp-schedule NAME` (parallel.pp_schedule),
// `peng schedule` and the checkpoint's recorded layout all go through this registry.
//
// A schedule is a function of (pp, virtual_stages, micro_batches) returning every pipeline
// rank's list of actions (parallel/pipeline/schedule.h). peng runs whatever list it is given,
// so every schedule is checked before it runs: build_schedule calls check_schedule and
// refuses (InputError naming the schedule and the first violation: a missing backward, a
// recv before its send, a deadlock) what would compute the wrong gradients or hang.
//
// Example: 1F1B with the warm-up shortened by one on every rank but the last
//   register_schedule({.name = "eager-1f1b",
//                      .description = "1F1B, one forward less in flight",
//                      .build = [](int pp, int v, int m) {
//                        Schedule computes(pp);  // forwards and backwards only
//                        for (int r = 0; r < pp; ++r) computes[r] = my_order(pp, m, r);
//                        return with_transfers(computes, pp, v);
//                      }});
//
// Thread safety: register every schedule before the first lookup (at the start of main).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "peng/parallel/pipeline/schedule.h"

namespace peng {

struct ScheduleSpec {
  std::string name = {};         // the --pp-schedule value
  std::string description = {};  // one line, for listings
  // Runs more than one model chunk per rank (virtual_stages > 1); otherwise
  // virtual_stages must be 1.
  bool chunked = false;
  // Every forward of a step runs before its first backward (GPipe): a Mixture-of-Experts
  // model's balance loss then sees the whole batch's routing; otherwise it is taken per
  // micro-batch.
  bool forwards_first = false;
  // Throws InputError naming the numbers when the schedule cannot run (pp, v, m) (optional;
  // pp, v, m >= 1 and the chunked rule are checked for every schedule).
  std::function<void(int pp, int virtual_stages, int micro_batches)> check = {};
  // Every pipeline rank's actions for one step.
  std::function<Schedule(int pp, int virtual_stages, int micro_batches)> build = {};
};

// Adds `spec` (InputError: an empty name, no build function, a name already registered).
void register_schedule(ScheduleSpec spec);
// The schedule called `name`; InputError listing the registered names when there is none.
const ScheduleSpec& schedule_spec(const std::string& name);
// Every registered name, built-in ones first.
std::vector<std::string> schedule_names();

// `name`'s schedule for (pp, v, m), checked with check_schedule (rendezvous sends, the
// strictest): InputError naming the schedule and the violation when the lists are not a
// valid schedule for that shape.
Schedule build_schedule(const std::string& name, int pp, int virtual_stages, int micro_batches);

// Checks a pipeline configuration before anything is built: the schedule exists, its shape
// rules (ScheduleSpec::chunked, ::check) and n_layer at least pp * virtual_stages (stage_split.h
// cuts it); InputError naming the fields and numbers.
void validate_pipeline(const std::string& name, int n_layer, int pp, int virtual_stages,
                       int micro_batches);

}  // namespace peng
