// One Mixture-of-Experts layer's routing over a training step (models/nn/moe.h).
#pragma once

#include <cstdint>
#include <vector>

namespace peng {

// Which tokens a MoE layer's balance loss is taken over when its backward runs (moe.h).
enum class BalanceScope { kStep, kMicroBatch };

struct RoutingStats {
  int layer = 0;                // the transformer layer
  std::vector<int64_t> tokens;  // per expert: tokens routed to it over the global batch
  double aux_loss = 0;          // the step's balance loss (alpha * sum_e f_e P_e)
};

}  // namespace peng
