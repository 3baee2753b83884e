#include "peng/parallel/pipeline/schedule_registry.h"

#include <map>
#include <memory>

#include "peng/core/error.h"

namespace peng {
namespace {

ScheduleSpec builtin(ScheduleKind kind, const char* description) {
  return {.name = schedule_kind_name(kind),
          .description = description,
          .chunked = kind == ScheduleKind::kInterleaved1F1B,
          .forwards_first = kind == ScheduleKind::kGPipe,
          // The built-in shape rules (n_layer is checked by the caller).
          .check = [kind](int pp, int v, int m) { validate_pipeline(kind, pp * v, pp, v, m); },
          .build = [kind](int pp, int v, int m) { return make_schedule(kind, pp, v, m); }};
}

// Registration order, built-in ones first.
std::vector<std::unique_ptr<ScheduleSpec>>& registry() {
  static std::vector<std::unique_ptr<ScheduleSpec>> specs = [] {
    std::vector<std::unique_ptr<ScheduleSpec>> v;
    v.push_back(std::make_unique<ScheduleSpec>(
        builtin(ScheduleKind::kGPipe, "GPipe: every forward, then every backward")));
    v.push_back(std::make_unique<ScheduleSpec>(
        builtin(ScheduleKind::k1F1B, "1F1B (PipeDream-flush): pp - rank - 1 warm-up forwards")));
    v.push_back(std::make_unique<ScheduleSpec>(builtin(
        ScheduleKind::kInterleaved1F1B, "interleaved 1F1B (Megatron): virtual_stages chunks")));
    return v;
  }();
  return specs;
}

std::string known_names() {
  std::string known;
  for (const std::string& n : schedule_names()) known += (known.empty() ? "" : ", ") + n;
  return known;
}

// The rules of every schedule (the schedule's own, ScheduleSpec::check, come after).
void check_shape(const ScheduleSpec& spec, int pp, int v, int m) {
  PENG_INPUT_CHECK(pp >= 1, "parallel.pp must be >= 1, got ", pp);
  PENG_INPUT_CHECK(v >= 1, "parallel.virtual_stages must be >= 1, got ", v);
  PENG_INPUT_CHECK(m >= 1, "the pipeline needs at least 1 micro-batch, got ", m);
  PENG_INPUT_CHECK(
      v == 1 || spec.chunked, "parallel.virtual_stages (", v,
      ") > 1 needs parallel.pp_schedule interleaved (or another chunked schedule), got ",
      spec.name);
}

// ScheduleSpec::forwards_first holds: on every rank, no backward before its last forward.
void check_forwards_first(const Schedule& s, const std::string& name) {
  for (size_t r = 0; r < s.size(); ++r) {
    bool backward = false;
    for (const Action& a : s[r]) {
      backward = backward || a.op == Action::kBackward;
      PENG_INPUT_CHECK(!(backward && a.op == Action::kForward), "pipeline schedule '", name,
                       "' is registered as forwards_first, but rank ", r, " runs ",
                       describe_action(a), " after a backward");
    }
  }
}

}  // namespace

void register_schedule(ScheduleSpec spec) {
  PENG_INPUT_CHECK(!spec.name.empty(), "register_schedule: the schedule has no name");
  PENG_INPUT_CHECK(bool(spec.build), "register_schedule: schedule '", spec.name,
                   "' has no build function");
  for (const auto& s : registry()) {
    PENG_INPUT_CHECK(s->name != spec.name, "register_schedule: a schedule named '", spec.name,
                     "' is already registered");
  }
  registry().push_back(std::make_unique<ScheduleSpec>(std::move(spec)));
}

const ScheduleSpec& schedule_spec(const std::string& name) {
  for (const auto& s : registry()) {
    if (s->name == name) return *s;
  }
  throw InputError("parallel.pp_schedule: unknown schedule '" + name +
                   "' (valid: " + known_names() + ")");
}

std::vector<std::string> schedule_names() {
  std::vector<std::string> names;
  for (const auto& s : registry()) names.push_back(s->name);
  return names;
}

Schedule build_schedule(const std::string& name, int pp, int v, int m) {
  const ScheduleSpec& spec = schedule_spec(name);
  check_shape(spec, pp, v, m);
  if (spec.check) spec.check(pp, v, m);
  Schedule s = spec.build(pp, v, m);
  const ScheduleCheck check = check_schedule(s, pp, v, m);
  PENG_INPUT_CHECK(check.ok, "pipeline schedule '", name, "' (pp ", pp, ", virtual stages ", v,
                   ", ", m, " micro-batches) is not a valid schedule: ", check.error);
  if (spec.forwards_first) check_forwards_first(s, name);
  return s;
}

void validate_pipeline(const std::string& name, int n_layer, int pp, int v, int m) {
  const ScheduleSpec& spec = schedule_spec(name);
  check_shape(spec, pp, v, m);
  PENG_INPUT_CHECK(n_layer >= pp * v, "model.n_layer (", n_layer, ") is less than pp x virtual ",
                   "stages (", pp, " x ", v, "): every pipeline stage needs a layer");
  if (spec.check) spec.check(pp, v, m);
}

}  // namespace peng
