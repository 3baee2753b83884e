// Global gradient L2 norm and clipping, torch.nn.utils.clip_grad_norm_ semantics.
// With ZeRO each dp rank holds a disjoint shard of the gradient: the norm is the square
// root of the sum over the shard group of each rank's sum of squares (in double), so it
// is the norm of the whole gradient on every rank, and clipping each shard by the same
// factor clips the whole gradient.
#pragma once

#include <cmath>
#include <functional>
#include <vector>

#include "peng/core/backend.h"
#include "peng/core/parameter.h"
#include "peng/parallel/communicator.h"

namespace peng {

// sqrt(sum(grads^2)) of one process's whole gradient, accumulated in double.
inline double global_grad_norm(ParameterSet& params, Backend& backend) {
  return std::sqrt(backend.sum_squares(params.flat_grads()));
}

// The global norm when ranks hold parts of the gradient. `counted` are the segments of
// the gradient this rank counts, at their state offsets in `grads` (the whole flat buffer,
// or this rank's ZeRO shard): each element once over all ranks (leave out copies held
// elsewhere too: owned_ranges()). Each rank sums their squares (in double), and the sums
// are added over `groups` (tp, pp; dp too with ZeRO). The same value on every rank.
double sharded_grad_norm(const Tensor& grads, const std::vector<ParamSegment>& counted,
                         Backend& backend, const std::vector<Communicator*>& groups);
// sharded_grad_norm in two halves, so that a step reads one device value for its loss and
// norm together: add_grad_squares queues this rank's sum of squares of `counted` into
// `acc` (f64 (1) on the backend's device, +=, in segment order) without waiting;
// norm_from_squares adds the host value of such a sum over `groups` and takes the root.
void add_grad_squares(const Tensor& grads, const std::vector<ParamSegment>& counted,
                      Backend& backend, Tensor& acc);
double norm_from_squares(double local_squares, const std::vector<Communicator*>& groups);

// Scales `grads` by max_norm / (norm + 1e-6) when that is < 1 (no-op when max_norm <= 0).
// Returns the factor applied (1 when unchanged).
float clip_grad_norm(Tensor& grads, Backend& backend, double norm, float max_norm);
inline float clip_grad_norm(ParameterSet& params, Backend& backend, double norm, float max_norm) {
  return clip_grad_norm(params.flat_grads(), backend, norm, max_norm);
}

}  // namespace peng
