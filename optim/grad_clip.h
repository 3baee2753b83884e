// Global gradient L2 norm and clipping, torch.nn.utils.clip_grad_norm_ semantics.
// With ZeRO each dp rank holds a disjoint shard of the gradient: the norm is the square
// root of the sum over the shard group of each rank's sum of squares (in double), so it
// is the norm of the whole gradient on every rank, and clipping each shard by the same
// factor clips the whole gradient.
#pragma once

#include <cmath>
#include <functional>
#include <vector>

#include "core/backend.h"
#include "core/parameter.h"
#include "parallel/communicator.h"

namespace peng {

// sqrt(sum(grads^2)) of one process's whole gradient, accumulated in double.
inline double global_grad_norm(ParameterSet& params, Backend& backend) {
  return std::sqrt(backend.sum_squares(params.flat_grads()));
}

// The global norm when ranks hold parts of the gradient. `grads` is laid out like `spans`
// of `params` (the whole flat buffer, or this rank's ZeRO shard). Each rank sums the
// squares of the gradients of the parameters it `counts` (in double; leave out copies held
// elsewhere too: tp-replicated parameters on tp ranks > 0, the tied wte on the last
// pipeline stage), and the sums are added over `groups` (tp, pp; dp too with ZeRO). The
// same value on every rank.
double sharded_grad_norm(const Tensor& grads, const std::vector<FlatSpan>& spans,
                         const ParameterSet& params, Backend& backend,
                         const std::function<bool(const Parameter&)>& counts,
                         const std::vector<Communicator*>& groups);

// Scales `grads` by max_norm / (norm + 1e-6) when that is < 1 (no-op when max_norm <= 0).
// Returns the factor applied (1 when unchanged).
float clip_grad_norm(Tensor& grads, Backend& backend, double norm, float max_norm);
inline float clip_grad_norm(ParameterSet& params, Backend& backend, double norm, float max_norm) {
  return clip_grad_norm(params.flat_grads(), backend, norm, max_norm);
}

}  // namespace peng
