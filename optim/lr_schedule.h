// Learning-rate schedules, a pure function of the 0-based step.
#pragma once

#include <cstdint>
#include <string>

namespace peng {

struct LrSchedule {
  enum class Kind { kConstant, kCosine };
  Kind kind = Kind::kConstant;
  float lr = 1e-3f;     // peak learning rate
  int64_t warmup = 0;   // linear warmup steps: lr * (step + 1) / warmup
  float min_lr = 0.0f;  // cosine: reached at the last step
  int64_t total = 1;    // total optimizer steps

  // "constant" or "cosine"; throws InputError naming the field otherwise.
  static Kind parse_kind(const std::string& name);
  float at(int64_t step) const;
};

}  // namespace peng
