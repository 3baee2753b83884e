#include "peng/models/nn/moe.h"

#include "peng/models/nn/buffer.h"

namespace peng {

namespace {
// The parameters registered since `first`.
void mark_from(ParameterSet& params, size_t first, bool expert_parallel, bool tp_partial) {
  for (size_t i = first; i < params.all().size(); ++i) {
    params.all()[i].expert_parallel = expert_parallel;
    params.all()[i].tp_partial_grad = tp_partial;
  }
}

// A copy of `c` whose MLP is a SwiGLU of `hidden` features without biases.
DecoderConfig swiglu_of(const DecoderConfig& c, int64_t hidden) {
  DecoderConfig e = c;
  e.ffn_hidden = hidden;
  e.mlp_bias = false;
  return e;
}
}  // namespace

Moe::Moe(ParameterSet& params, const std::string& prefix, int layer, const DecoderConfig& c,
         const TpGroup& tp, const ExpertGroup& experts)
    : layer_(layer),
      moe_(c.moe),
      routing_{.topk = c.moe.topk, .sigmoid = c.moe.sigmoid, .norm_topk = c.moe.norm_topk},
      group_(experts),
      params_(params),
      router_(params, prefix + "." + c.names.router, c.n_embd, c.moe.experts, {},
              {.bias = false, .layout = c.weight_layout, .init = {ParamInit::kNormal, c.init_std}}),
      dispatch_(c.moe.experts, c.moe.topk, experts),
      step_tokens_(size_t(c.moe.experts), 0),
      step_probs_(size_t(c.moe.experts), 0.0) {
  const bool sp = tp.sequence_parallel && tp.size() > 1;  // each tp rank routes its own rows
  mark_from(params, params.all().size() - 1, false, sp);
  bias_ = params.add(prefix + "." + c.names.router + "." + c.names.router_bias, {c.moe.experts});
  Parameter& b = params.at(bias_);
  b.init = {ParamInit::kZeros};
  b.trained = false;
  b.flops = false;
  const int local = c.moe.experts / group_.size(), first = group_.rank() * local;
  const DecoderConfig expert = swiglu_of(c, c.moe.expert_hidden);
  for (int e = first; e < first + local; ++e) {
    const size_t registered = params.all().size();
    experts_.push_back(std::make_unique<Mlp>(
        params, prefix + "." + c.names.experts + "." + std::to_string(e), expert, TpGroup{}));
    mark_from(params, registered, true, sp);
  }
  if (c.moe.shared > 0) {
    const size_t registered = params.all().size();
    shared_ = std::make_unique<Mlp>(params, prefix + "." + c.names.shared_experts,
                                    swiglu_of(c, c.moe.shared * c.moe.expert_hidden), TpGroup{});
    mark_from(params, registered, false, sp);
  }
}

// ---- forward ----

const Tensor& Moe::forward(Backend& be, const Tensor& u) {
  const Device dev = u.device();
  const int64_t n = u.dim(0), c = u.dim(1), e = moe_.experts, k = moe_.topk;
  const Tensor& logits = router_.forward(be, u);
  ensure_buffer(scores_, {n, e}, dev);
  ensure_buffer(chosen_, {n, k}, dev, DType::kI32);
  ensure_buffer(weights_, {n, k}, dev);
  ensure_buffer(prob_sums_, {e}, dev, DType::kF64);
  be.moe_route(logits, params_.at(bias_).value, routing_, scores_, chosen_, weights_, prob_sums_);
  dispatch_.plan(dev.is_cpu() ? chosen_ : chosen_.to(Device::cpu()), dev);
  balance_statistics(n);

  const int64_t m = dispatch_.send_rows();
  ensure_buffer(send_in_, {m, c}, dev);
  be.gather_rows(u, dispatch_.send_token(), Tensor(), send_in_);
  dispatch_.dispatch(be, send_in_, expert_in_);
  ensure_buffer(expert_out_, expert_in_.shape(), dev);
  run_experts(be, expert_in_, expert_out_, /*backward=*/false);
  dispatch_.combine(be, expert_out_, send_out_);

  ensure_buffer(send_weight_, {m}, dev);
  Tensor weight_rows = send_weight_.view({m, 1});
  be.gather_rows(weights_.view({n * k, 1}), dispatch_.send_choice(), Tensor(), weight_rows);
  ensure_buffer(out_, {n, c}, dev);
  out_.zero();
  be.scatter_add_rows(send_out_, dispatch_.send_token(), send_weight_, out_);
  if (shared_) be.add(out_, shared_->forward(be, u), out_);
  return out_;
}

// This forward's counts and score sums over the routing group, into load_ and the step's.
void Moe::balance_statistics(int64_t rows) {
  const int e = moe_.experts;
  const std::vector<int64_t> counts = dispatch_.local_counts();
  const Tensor probs = prob_sums_.to(Device::cpu());
  std::vector<double> v(size_t(2 * e + 1));
  for (int i = 0; i < e; ++i) {
    v[size_t(i)] = double(counts[size_t(i)]);
    v[size_t(e + i)] = probs.data<double>()[i];
  }
  v[size_t(2 * e)] = double(rows);
  if (group_.routing) {
    Tensor t = Tensor::from_vector(v, {2 * e + 1});
    group_.routing->all_reduce(t, ReduceOp::kSum)->wait();
    v.assign(t.data<double>(), t.data<double>() + 2 * e + 1);
  }
  std::vector<double> load(v.begin(), v.begin() + e);
  load.push_back(v[size_t(2 * e)]);
  load_ = Tensor::from_vector(load, {e + 1});
  if (recomputing_) return;  // counted when it first ran
  for (int i = 0; i < e; ++i) {
    step_tokens_[size_t(i)] += int64_t(v[size_t(i)]);
    step_probs_[size_t(i)] += v[size_t(e + i)];
  }
  step_rows_ += v[size_t(2 * e)];
}

// Every local expert on its block of rows: in (R, C) -> out (R, C), forward or backward.
void Moe::run_experts(Backend& be, const Tensor& in, Tensor& out, bool backward) {
  int64_t at = 0;
  const std::vector<int64_t> rows = dispatch_.expert_rows();
  for (size_t i = 0; i < experts_.size(); ++i) {
    if (rows[i] == 0) {  // no token: no work, a zero gradient, nothing kept from before
      if (!backward) {
        std::vector<Tensor*> slots;
        experts_[i]->activation_slots(slots);
        for (Tensor* t : slots) *t = Tensor();
      }
      continue;
    }
    const Tensor block = in.slice(at, at + rows[i]);
    const Tensor& y = backward ? experts_[i]->backward(be, block) : experts_[i]->forward(be, block);
    out.slice(at, at + rows[i]).copy_from(y);
    at += rows[i];
  }
}

// ---- backward ----

const Tensor& Moe::backward(Backend& be, const Tensor& dout, float scale) {
  const Device dev = dout.device();
  const int64_t n = dout.dim(0), c = dout.dim(1), e = moe_.experts, k = moe_.topk;
  const int64_t m = dispatch_.send_rows();
  ensure_buffer(dx_, {n, c}, dev);
  if (shared_) {
    dx_.copy_from(shared_->backward(be, dout));
  } else {
    dx_.zero();
  }
  // Each routed row's output gradient w * dout, and d(w) = dout . expert output.
  ensure_buffer(dsend_raw_, {m, c}, dev);
  be.gather_rows(dout, dispatch_.send_token(), Tensor(), dsend_raw_);
  ensure_buffer(dchoice_, {m}, dev);
  be.rows_dot(dsend_raw_, send_out_, dchoice_);
  ensure_buffer(dsend_, {m, c}, dev);
  be.gather_rows(dout, dispatch_.send_token(), send_weight_, dsend_);
  dispatch_.dispatch(be, dsend_, dexpert_out_);
  ensure_buffer(dexpert_in_, dexpert_out_.shape(), dev);
  run_experts(be, dexpert_out_, dexpert_in_, /*backward=*/true);
  dispatch_.combine(be, dexpert_in_, dsend_in_);
  be.scatter_add_rows(dsend_in_, dispatch_.send_token(), Tensor(), dx_);

  // The router: the weights' gradient and the balance loss's, through the scores.
  ensure_buffer(dweights_, {n, k}, dev);
  dweights_.zero();
  Tensor dweight_rows = dweights_.view({n * k, 1});
  be.scatter_add_rows(dchoice_.view({m, 1}), dispatch_.send_choice(), Tensor(), dweight_rows);
  // d aux / d(scores / sum) = alpha f_e / n per token of the n the statistic spans, times
  // that loss's share of the step (kMicroBatch: n / the step's tokens = n * scale).
  const double* load = load_.data<double>();
  const bool step = scope_ == BalanceScope::kStep;
  const double spanned = step ? step_rows_ : load[e];
  std::vector<float> aux(static_cast<size_t>(e));
  for (int64_t i = 0; i < e; ++i) {
    const double count = step ? double(step_tokens_[size_t(i)]) : load[i];
    const double f = double(e) / (double(k) * spanned) * count;
    aux[size_t(i)] = float(moe_.aux_alpha * double(scale) * f);
  }
  const Tensor aux_grad = Tensor::from_vector(aux, {e}).to(dev);
  ensure_buffer(dlogits_, {n, e}, dev);
  be.moe_route_backward(dweights_, scores_, chosen_, aux_grad, routing_, dlogits_);
  be.add(dx_, router_.backward(be, dlogits_), dx_);
  return dx_;
}

// ---- the step ----

RoutingStats Moe::step_stats() const {
  double aux = 0;  // alpha sum_e f_e P_e over the step's tokens
  const int e = moe_.experts;
  for (int i = 0; i < e && step_rows_ > 0; ++i) {
    const double f = double(e) / (double(moe_.topk) * step_rows_) * double(step_tokens_[size_t(i)]);
    aux += f * step_probs_[size_t(i)] / step_rows_;
  }
  return {.layer = layer_, .tokens = step_tokens_, .aux_loss = moe_.aux_alpha * aux};
}

void Moe::begin_step() {
  std::fill(step_tokens_.begin(), step_tokens_.end(), 0);
  std::fill(step_probs_.begin(), step_probs_.end(), 0.0);
  step_rows_ = 0;
}

void Moe::update_bias() {
  if (moe_.bias_update_speed <= 0 || step_rows_ == 0) return;
  Parameter& b = params_.at(bias_);
  Tensor host = b.value.to(Device::cpu());
  float* v = host.data<float>();
  const double mean = double(moe_.topk) * step_rows_ / double(moe_.experts);
  for (int i = 0; i < moe_.experts; ++i) {
    const double c = double(step_tokens_[size_t(i)]);
    const double sign = c < mean ? 1.0 : c > mean ? -1.0 : 0.0;
    v[i] = float(double(v[i]) + moe_.bias_update_speed * sign);
  }
  b.value.copy_from(host);
}

void Moe::drop_input() {
  router_.drop_input();
  if (shared_) shared_->drop_input();
}

void Moe::restore_input(const Tensor& u) {
  router_.restore_input(u);
  if (shared_) shared_->restore_input(u);
}

void Moe::activation_slots(std::vector<Tensor*>& out) {
  router_.activation_slots(out);
  out.insert(out.end(), {&scores_, &chosen_, &weights_, &load_, &send_in_, &expert_in_,
                         &expert_out_, &send_out_, &send_weight_, &out_});
  dispatch_.activation_slots(out);
  for (auto& expert : experts_) expert->activation_slots(out);
  if (shared_) shared_->activation_slots(out);
}

}  // namespace peng
