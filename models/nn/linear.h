// Linear layer y = x W + b (Conv1D layout, W (in, out)) or y = x W^T + b (nn.Linear layout,
// W (out, in)), optionally split over a tensor-parallel group (Megatron-LM's
// ColumnParallelLinear and RowParallelLinear):
// - kColumn: W's output features (and b) are split; x (N, in) is the same on every rank and
//   y (N, local out) is this rank's features. Backward all-reduces dx over the group.
//   The output features may be fused blocks laid end to end (GPT-2's c_attn [q | k | v],
//   3 equal blocks; a GQA [q | k | v] of H*hd, K*hd, K*hd; SwiGLU's [gate | up]): each is
//   cut into pieces over the group (ShardBlock), so every rank holds its piece of each.
//   A block with fewer pieces than ranks (K kv heads over tp > K) is replicated: the
//   ranks holding a piece compute the same features and partial gradients of its weights
//   (summed over the replicas by the trainer: Parameter::shard, replica_ranges()).
// - kRow: W's input features are split; x (N, in / tp) is this rank's features of the
//   input (a column-parallel layer's output) and y (N, out) is all-reduced over the group,
//   with b (replicated) added once. Backward needs no communication.
// Sequence parallelism (`rows_sharded` in forward): the activations outside the layer pair
// are split by rows over the group (rank r: rows [r R, (r+1) R) of N = tp R). A column
// layer then all-gathers its input rows (backward: reduce-scatters dx), a row layer
// reduce-scatters its output into this rank's rows and adds b to them (backward:
// all-gathers dy, so db is complete on every rank).
#pragma once

#include <string>
#include <vector>

#include "peng/core/backend.h"
#include "peng/core/parameter.h"
#include "peng/parallel/tensor_parallel/tp_group.h"

namespace peng {

enum class LinearSplit { kNone, kColumn, kRow };

struct LinearOptions {
  bool bias = true;
  LinearSplit split = LinearSplit::kNone;
  WeightLayout layout = WeightLayout::kInOut;
  // The split features (kColumn: output, kRow: input) as fused blocks, possibly padded
  // (ShardBlock::logical; the layer's `in` / `out` are then the padded sizes). Empty: one
  // block of all of them.
  std::vector<ShardBlock> blocks = {};
  ParamInit init = {};  // of the weight (the bias starts at 0)
};

class Linear {
 public:
  // Registers `<prefix>.weight` and, with bias, `<prefix>.bias` (out): global shapes; this
  // rank holds its shard of them.
  Linear(ParameterSet& params, const std::string& prefix, int64_t in, int64_t out,
         const TpGroup& tp = {}, const LinearOptions& options = {});

  // x (N, local in) -> y (N, local out). Keeps a handle on x for backward. With
  // rows_sharded: a column layer takes x (N / tp, in), a row layer returns y (N / tp, out).
  const Tensor& forward(Backend& be, const Tensor& x, bool rows_sharded = false);
  // dy (like y) -> dx (like x); dW and db accumulate.
  const Tensor& backward(Backend& be, const Tensor& dy);

  Parameter& weight() { return params_.at(weight_); }
  // The last forward's output y.
  const Tensor& output() const { return y_; }
  int64_t local_out() const { return out_; }
  // What forward keeps for backward (pipeline stashes move these out and back).
  void activation_slots(std::vector<Tensor*>& out) { out.insert(out.end(), {&x_, &y_, &full_}); }
  // Activation recomputation: forget the input forward kept (and its gathered rows under
  // sequence parallelism), and take it back before backward: the same x as forward's,
  // gathered again (collective over tp, as in forward).
  void drop_input() { x_ = full_ = Tensor(); }
  void restore_input(const Tensor& x);

 private:
  ParameterSet& params_;
  int weight_ = -1, bias_ = -1;
  LinearSplit split_;
  WeightLayout layout_;
  TpGroup tp_;
  int64_t in_, out_;  // local
  bool rows_sharded_ = false;
  Tensor x_, y_, dx_;
  // Sequence parallelism: gathered rows (x or partial y), gathered dy, this rank's rows of
  // dx, a column of ones for the bias.
  Tensor full_, dfull_, dx_rows_, ones_;
};

}  // namespace peng
