// Linear layer in Hugging Face Conv1D layout: y = x @ W + b, W stored (in, out), optionally
// split over a tensor-parallel group (Megatron-LM's ColumnParallelLinear and
// RowParallelLinear, without sequence parallelism):
// - kColumn: W's output columns (and b) are split; x (N, in) is the same on every rank and
//   y (N, out / tp) is this rank's columns. Backward all-reduces dx over the group.
//   `blocks` > 1 splits each of that many equal column blocks (c_attn's q | k | v).
// - kRow: W's input rows are split; x (N, in / tp) is this rank's columns of the input
//   (a column-parallel layer's output) and y (N, out) is all-reduced over the group, with
//   b (replicated) added once. Backward needs no communication.
// Sequence parallelism (`rows_sharded` in forward): the activations outside the layer pair
// are split by rows over the group (rank r: rows [r R, (r+1) R) of N = tp R). A column
// layer then all-gathers its input rows (backward: reduce-scatters dx), a row layer
// reduce-scatters its output into this rank's rows and adds b to them (backward:
// all-gathers dy, so db is complete on every rank).
#pragma once

#include <string>
#include <vector>

#include "core/backend.h"
#include "core/parameter.h"
#include "parallel/tensor_parallel/tp_group.h"

namespace peng {

enum class LinearSplit { kNone, kColumn, kRow };

class Linear {
 public:
  // Registers `<prefix>.weight` (in, out) and, with bias, `<prefix>.bias` (out): logical
  // shapes; this rank holds its shard of them.
  Linear(ParameterSet& params, const std::string& prefix, int64_t in, int64_t out, bool bias = true,
         LinearSplit split = LinearSplit::kNone, const TpGroup& tp = {}, int blocks = 1);

  // x (N, local in) -> y (N, local out). Keeps a handle on x for backward. With
  // rows_sharded: a column layer takes x (N / tp, in), a row layer returns y (N / tp, out).
  const Tensor& forward(Backend& be, const Tensor& x, bool rows_sharded = false);
  // dy (like y) -> dx (like x); dW and db accumulate.
  const Tensor& backward(Backend& be, const Tensor& dy);

  Parameter& weight() { return params_.at(weight_); }
  // What forward keeps for backward (pipeline stashes move these out and back).
  void activation_slots(std::vector<Tensor*>& out) { out.insert(out.end(), {&x_, &y_, &full_}); }

 private:
  ParameterSet& params_;
  int weight_ = -1, bias_ = -1;
  LinearSplit split_;
  TpGroup tp_;
  int64_t in_, out_;  // local
  bool rows_sharded_ = false;
  Tensor x_, y_, dx_;
  // Sequence parallelism: gathered rows (x or partial y), gathered dy, this rank's rows of
  // dx, a column of ones for the bias.
  Tensor full_, dfull_, dx_rows_, ones_;
};

}  // namespace peng
