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
// one global micro-batch, ExpertGroup::routing) and over the step's forwards: with c_e the
// tokens routed to e and n the tokens of the global batch,
//   f_e = E / (k n) c_e (no gradient),  P_e = mean over tokens of scores / sum(scores),
//   aux = alpha sum_e f_e P_e  (the Switch / DeepSeek expert-level balance loss),
// added to the trained loss. Its gradient reaches every token's scores as
// alpha * scale * f_e (scale: the backward's loss scale, 1 / global batch tokens). With
// BalanceScope::kStep the backward takes f_e of every forward of the step so far: the
// global batch's when all forwards come first (one micro-batch per step, the trainer's
// forwards-first micro-batching, GPipe). kMicroBatch takes each forward's own f_e (global
// micro-batch) with that micro-batch's share of the loss, for schedules that interleave
// forwards and backwards (1F1B), as Megatron-Core does. The step's counts drive DeepSeek-V3's
// auxiliary-loss-free balancing after the optimizer step: b_e += speed * sign(mean - c_e).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "peng/models/decoder/config.h"
#include "peng/models/nn/expert_dispatch.h"
#include "peng/models/nn/linear.h"
#include "peng/models/nn/mlp.h"
#include "peng/models/nn/routing_stats.h"

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

  void set_balance_scope(BalanceScope scope) { scope_ = scope; }
  // Statistics of the step so far (every forward since begin_step()).
  RoutingStats step_stats() const;
  void begin_step();
  // DeepSeek-V3's bias update from the step's counts (no-op when the speed is 0).
  void update_bias();

  void activation_slots(std::vector<Tensor*>& out);

  // Activation recomputation (models/decoder/block.h): a forward run again in backward routes
  // every token as before and adds nothing to the step's statistics; drop_input and
  // restore_input forget and take back the input u (router and shared expert).
  void set_recomputing(bool on) { recomputing_ = on; }
  void drop_input();
  void restore_input(const Tensor& u);

 private:
  void balance_statistics(int64_t rows);
  void run_experts(Backend& be, const Tensor& in, Tensor& out, bool backward);

  int layer_;
  BalanceScope scope_ = BalanceScope::kStep;
  bool recomputing_ = false;
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
  Tensor scores_, chosen_, weights_, prob_sums_;
  Tensor load_;  // host f64 (E + 1): the forward's global counts c_e, then its tokens n
  Tensor send_in_, expert_in_, expert_out_, send_out_, send_weight_, out_;
  // Backward buffers.
  Tensor dsend_, dsend_raw_, dchoice_, dexpert_in_, dexpert_out_, dsend_in_, dweights_, dlogits_,
      dx_;
  // The step so far.
  std::vector<int64_t> step_tokens_;
  std::vector<double> step_probs_;  // sum over the step's tokens of scores / sum(scores)
  double step_rows_ = 0;            // the step's tokens
};

}  // namespace peng
