// The feed-forward slot of a decoder layer (Megatron's TransformerLayerSubmodules.mlp): the
// built-in MLP (models/nn/mlp.h) or a layer a program registers by name and selects with
// DecoderConfig::ffn_layer. A model family that changes only its MLP is then a config and a
// registration, with no edit to peng's sources (examples/custom_layer).
//
// Contract for an implementation (the block calls it like the built-in MLP):
//   - the constructor registers its parameters on `params` under `prefix` ("<layer>.<i>.<mlp>"
//     of the family's DecoderNames), with logical shapes and shard specs (Linear does both),
//     so checkpoints, ZeRO, exports and FLOPs see them;
//   - forward: x (N, C) -> out (N, C), a tensor the layer owns until its next forward; with
//     rows_sharded (sequence parallelism), x and out are this rank's N / tp rows;
//   - backward: dout (N, C) -> dx (N, C), accumulating (+=) into its parameters' gradients;
//     called once after each forward, in reverse order over micro-batches' stashes;
//   - activation_slots lists every tensor forward keeps for backward (pipeline stashes move
//     them out and back between the two);
//   - recomputation hooks (models/nn/recompute.h): set_recompute_act asks it to drop its
//     activation's output in forward and remake it in backward (it may ignore the request);
//     drop_input / restore_input forget and take back its input x.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "peng/core/parameter.h"
#include "peng/core/tensor.h"
#include "peng/parallel/tensor_parallel/tp_group.h"

namespace peng {

class Backend;
struct DecoderConfig;

class FeedForward {
 public:
  virtual ~FeedForward() = default;
  virtual const Tensor& forward(Backend& be, const Tensor& x, bool rows_sharded = false) = 0;
  virtual const Tensor& backward(Backend& be, const Tensor& dout) = 0;
  virtual void activation_slots(std::vector<Tensor*>& out) = 0;
  virtual void set_recompute_act(bool act) { (void)act; }
  virtual void drop_input() = 0;
  virtual void restore_input(const Tensor& x) = 0;
};

using FeedForwardBuilder =
    std::function<std::unique_ptr<FeedForward>(ParameterSet& params, const std::string& prefix,
                                               const DecoderConfig& config, const TpGroup& tp)>;

// Registers a feed-forward layer under `name` (InputError: empty or taken name). Register
// before building a model that names it (at the start of main).
void register_feed_forward(const std::string& name, FeedForwardBuilder build);
// The layer config.ffn_layer names (InputError listing the registered ones when unknown), or
// the built-in MLP when it is empty.
std::unique_ptr<FeedForward> make_feed_forward(ParameterSet& params, const std::string& prefix,
                                               const DecoderConfig& config, const TpGroup& tp);

}  // namespace peng
