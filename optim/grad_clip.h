// Global gradient L2 norm and clipping, torch.nn.utils.clip_grad_norm_ semantics.
#pragma once

#include "core/backend.h"
#include "core/parameter.h"

namespace peng {

// sqrt(sum over all parameters of sum(grad^2)), accumulated in double.
double global_grad_norm(ParameterSet& params, Backend& backend);

// Scales all gradients by max_norm / (norm + 1e-6) when that is < 1 (no-op when
// max_norm <= 0). Returns the factor applied (1 when unchanged).
float clip_grad_norm(ParameterSet& params, Backend& backend, double norm, float max_norm);

}  // namespace peng
