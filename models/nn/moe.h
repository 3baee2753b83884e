// Mixture-of-Experts feed-forward (DeepSeek-MoE; Megatron-Core's MoELayer), dropless, for one
// rank. Per token u_t (N, C) of this rank:
//   logits = u W_router^T (E); scores = softmax or sigmoid (logits)
//   chosen = top-k of scores + b (b: the selection bias, a buffer: it only selects)
//   w_j = scores[chosen_j] (/ sum of the chosen scores with norm_topk)
//   y_t = sum_j w_j expert_{chosen_j}(u_t) + shared(u_t)        (SwiGLU experts)
// Experts: E routed SwiGLUs of width M, split over the expert-parallel group (ExpertGroup:
// this rank holds E / ep of them; rows travel through ExpertDispatch), and an optional
// shared SwiGLU of width S*M that sees every token. None is split by tensor parallelism:
// under sequence parallelism each tp rank routes its own rows and the weights' gradients
// are tp-partial; without it the tp ranks compute the same rows.
//
// Balance. Each forward's statistics are summed over the routing group (the ranks sharing
// one global micro-batch, ExpertGroup::routing): c_e = tokens routed to e, n = tokens,
//   f_e = E / (k n) c_e (no gradient),  P_e = mean over tokens of scores / sum(scores),
//   aux = alpha sum_e f_e P_e  (the Switch / DeepSeek expert-level balance loss).
// The trained loss adds aux weighted by the forward's share of the step's tokens (n / the
// global batch: one forward per step gives exactly the global batch's loss); its gradient
// reaches every token's scores as alpha * scale * f_e (scale: the backward's loss scale,
// 1 / global batch tokens). The step's counts drive DeepSeek-V3's auxiliary-loss-free
// balancing after the optimizer step: b_e += speed * sign(mean count - c_e).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/decoder/config.h"
#include "models/nn/expert_dispatch.h"
#include "models/nn/linear.h"
#include "models/nn/mlp.h"
#include "models/nn/routing_stats.h"

namespace peng {

class Moe {
 public:
  // Registers `<prefix>.<router>.weight` (E, C), `<prefix>.<router>.<router_bias>` (E, not
  // trained), this rank's experts `<prefix>.<experts>.<e>.{<mlp_in>, <mlp_out>}.weight` and,
  // with shared experts, `<prefix>.<shared_experts>.{...}`.
  Moe(ParameterSet& params, const std::string& prefix, int layer, const DecoderConfig& config,
      const TpGroup& tp, const ExpertGroup& experts);

  // u (N, C) -> out (N, C). Collective over the routing and expert-parallel groups.
  const Tensor& forward(Backend& be, const Tensor& u);
  // dout (N, C) -> du (N, C); `scale` is the loss scale of the backward pass.
  const Tensor& backward(Backend& be, const Tensor& dout, float scale);

  // Statistics of the step so far (every forward since begin_step(), token-weighted aux).
  RoutingStats step_stats() const;
  void begin_step();
  // DeepSeek-V3's bias update from the step's counts (no-op when the speed is 0).
  void update_bias();

  void activation_slots(std::vector<Tensor*>& out);

 private:
  void balance_statistics(int64_t rows);
  void run_experts(Backend& be, const Tensor& in, Tensor& out, bool backward);

  int layer_;
  MoeConfig moe_;
  MoeRouting routing_;
  ExpertGroup group_;
  ParameterSet& params_;
  Linear router_;
  int bias_ = -1;
  std::vector<std::unique_ptr<Mlp>> experts_;  // this rank's, in expert order
  std::unique_ptr<Mlp> shared_;
  ExpertDispatch dispatch_;
  // Per forward (activation slots).
  Tensor scores_, chosen_, weights_, prob_sums_, load_;  // load_: f_e (E), host
  Tensor send_in_, expert_in_, expert_out_, send_out_, send_weight_, out_;
  // Backward buffers.
  Tensor dsend_, dsend_raw_, dchoice_, dexpert_in_, dexpert_out_, dsend_in_, dweights_, dlogits_,
      dx_;
  // The step so far.
  std::vector<int64_t> step_tokens_;
  double step_aux_ = 0, step_rows_ = 0;  // sum of n * aux, sum of n
};

}  // namespace peng
