#include "peng/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "peng/core/error.h"

namespace peng {

LrSchedule::Kind LrSchedule::parse_kind(const std::string& name) {
  if (name == "constant") return Kind::kConstant;
  if (name == "cosine") return Kind::kCosine;
  throw InputError("schedule.lr_schedule: unknown schedule '" + name +
                   "' (known: constant, cosine)");
}

float LrSchedule::at(int64_t step) const {
  if (step < warmup) return lr * float(step + 1) / float(warmup);
  if (kind == Kind::kConstant) return lr;
  const int64_t span = std::max<int64_t>(1, total - 1 - warmup);
  const double progress = std::min(1.0, double(step - warmup) / double(span));
  return float(min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace peng
