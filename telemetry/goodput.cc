#include "peng/telemetry/goodput.h"

#include <algorithm>

namespace peng {

void GoodputAccount::add_step(double seconds, bool recomputed) {
  if (recomputed) {
    recomputed_s += seconds;
    ++recomputed_steps;
  } else {
    productive_s += seconds;
  }
}

double GoodputAccount::other_s(double wall_s) const {
  return std::max(
      0.0, wall_s - productive_s - startup_s - recomputed_s - checkpoint_stall_s - evaluation_s);
}

nlohmann::json GoodputAccount::to_json(double wall_s) const {
  return {{"goodput", goodput(wall_s)},
          {"wall_s", wall_s},
          {"productive_s", productive_s},
          {"lost_s",
           {{"startup", startup_s},
            {"checkpoint", checkpoint_stall_s},
            {"recomputed", recomputed_s},
            {"evaluation", evaluation_s},
            {"other", other_s(wall_s)}}},
          {"recomputed_steps", recomputed_steps}};
}

}  // namespace peng
