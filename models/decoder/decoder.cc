#include "peng/models/decoder/decoder.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "peng/models/nn/buffer.h"

namespace peng {

namespace {
std::string weight(const std::string& name) { return name + ".weight"; }

// Box-Muller on a 64-bit Mersenne Twister: the same numbers on every platform
// (std::normal_distribution is implementation-defined).
class NormalRng {
 public:
  explicit NormalRng(uint64_t seed) : gen_(seed) {}
  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = (double(gen_() >> 11) + 0.5) * 0x1.0p-53;  // (0, 1)
    double u2 = double(gen_() >> 11) * 0x1.0p-53;
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }

 private:
  std::mt19937_64 gen_;
  double spare_ = 0;
  bool has_spare_ = false;
};
// `t` on `device`, in a buffer of its own (the caller may reuse t's): one copy.
Tensor on_device(const Tensor& t, Device device) {
  return t.device() == device ? t.clone() : t.to(device);
}

// acc (1) f64 += v, from the host: the vocabulary-parallel loss is summed on the host (its
// row statistics are read there), so on a GPU this reads and writes the accumulator back.
void add_to_accumulator(Tensor& acc, double v) {
  PENG_CHECK(acc.dtype() == DType::kF64 && acc.numel() == 1, "loss accumulator ", acc.str(),
             ": expected f64 (1)");
  if (acc.device().is_cpu()) {
    acc.data<double>()[0] += v;
    return;
  }
  Tensor host = acc.to(Device::cpu());
  host.data<double>()[0] += v;
  acc.copy_from(host);
}
}  // namespace

std::unique_ptr<CausalLM> build_decoder(const DecoderConfig& config, Backend& backend,
                                        const TpGroup& tp, const PipelineLayout& pipe,
                                        const ExpertGroup& experts, bool allocate) {
  return std::make_unique<DecoderModel>(config, backend, tp, pipe, experts, allocate);
}

DecoderModel::DecoderModel(const DecoderConfig& config, Backend& backend, const TpGroup& tp,
                           const PipelineLayout& pipe, const ExpertGroup& experts, bool allocate)
    : arch_(config),
      backend_(backend),
      tp_(tp),
      pipe_(pipe),
      split_(pipe.layers(config.n_layer)),
      vp_(config.padded_vocab(tp.size())),
      vocab_begin_(vp_ / tp.size() * tp.rank()),
      vocab_valid_(std::clamp<int64_t>(config.vocab_size - vocab_begin_, 0, vp_ / tp.size())),
      params_(backend.device()) {
  arch_.validate();
  arch_.check_tensor_parallel(tp.size());
  arch_.check_expert_parallel(experts.size());
  if (arch_.rope.theta > 0) {
    rope_ = std::make_unique<RopeTables>(arch_.rope, arch_.head_dim, backend.device());
  }
  register_embeddings();
  for (int chunk = 0; chunk < pipe_.virtual_stages; ++chunk) {
    const int stage = chunk * pipe_.pp + pipe_.rank;
    const int first = pipe_.first_layer(stage, arch_.n_layer);
    chunk_begin_.push_back(blocks_.size());
    for (int l = first; l < first + split_[size_t(stage)]; ++l) {
      block_offsets_.push_back(params_.numel());
      block_layers_.push_back(l);
      const size_t registered = params_.all().size();
      blocks_.push_back(std::make_unique<Block>(params_, l, arch_, tp_, rope_.get(), experts));
      for (size_t i = registered; i < params_.all().size(); ++i) params_.all()[i].layer = l;
    }
  }
  chunk_begin_.push_back(blocks_.size());
  head_offset_ = params_.numel();
  if (pipe_.last_rank()) register_head();
  if (allocate) params_.finalize();
}

void DecoderModel::register_embeddings() {
  const bool tied = arch_.tied_embeddings;
  if (!pipe_.first_rank() && !(pipe_.last_rank() && tied)) return;
  const ShardSpec rows{.dim = 0, .parts = tp_.size(), .index = tp_.rank()};
  wte_ = params_.add(weight(arch_.names.token_embedding), {vp_, arch_.n_embd}, rows);
  Parameter& wte = params_.at(wte_);
  wte.logical_shape = {arch_.vocab_size, arch_.n_embd};
  wte.init = {ParamInit::kNormal, arch_.init_std};
  wte.flops = tied;  // as the head it multiplies; as an embedding it is only looked up
  wte.layer = pipe_.first_rank() ? -1 : arch_.n_layer;
  if (tied) {
    wte.tie_group = "embedding";
    wte.tie_primary = pipe_.first_rank();
  }
  if (pipe_.first_rank() && arch_.position_embedding) {
    wpe_ = params_.add(weight(arch_.names.position_embedding), {arch_.max_seq_len, arch_.n_embd});
    Parameter& wpe = params_.at(wpe_);
    wpe.init = {ParamInit::kNormal, arch_.init_std};
    wpe.flops = false;
    wpe.layer = -1;
  }
}

void DecoderModel::register_head() {
  const size_t registered = params_.all().size();
  final_norm_ = std::make_unique<Norm>(params_, arch_.names.final_norm, arch_.n_embd, arch_.norm,
                                       arch_.norm_eps);
  if (tp_.sequence_parallel && tp_.size() > 1) {  // it sees this rank's rows only
    for (int p : final_norm_->parameters()) params_.at(p).tp_partial_grad = true;
  }
  if (!arch_.tied_embeddings) {
    head_ = params_.add(weight(arch_.names.lm_head), {vp_, arch_.n_embd},
                        {.dim = 0, .parts = tp_.size(), .index = tp_.rank()});
    Parameter& head = params_.at(head_);
    head.logical_shape = {arch_.vocab_size, arch_.n_embd};
    head.init = {ParamInit::kNormal, arch_.init_std};
  }
  for (size_t i = registered; i < params_.all().size(); ++i) params_.all()[i].layer = arch_.n_layer;
}

void DecoderModel::init_random(uint64_t seed) {
  // The whole model's table, in registration order, decides the draws: each rank keeps the
  // numbers of the parameters it holds and skips the others'.
  const DecoderModel table(arch_, backend_, {}, {}, {}, /*allocate=*/false);
  NormalRng rng(seed);
  for (const Parameter& t : table.params_.all()) {
    const int64_t n = shape_numel(t.logical_shape);
    Parameter* p = params_.find(t.name);
    if (!p) {
      if (t.init.kind == ParamInit::kNormal) {
        for (int64_t i = 0; i < n; ++i) rng.next();
      }
      continue;
    }
    Tensor logical = Tensor::zeros(t.logical_shape);
    float* v = logical.data<float>();
    if (t.init.kind == ParamInit::kOnes) std::fill(v, v + n, 1.0f);
    if (t.init.kind == ParamInit::kNormal) {
      for (int64_t i = 0; i < n; ++i) v[i] = float(rng.next() * t.init.std);
    }
    p->value.copy_from(take_shard(pad_to_global(logical, *p), *p).to(p->value.device()));
  }
}

void DecoderModel::load_state(const std::map<std::string, Tensor>& tensors) {
  for (Parameter& p : params_.all()) {
    auto it = tensors.find(p.name);
    PENG_CHECK(it != tensors.end(), "load_state: missing tensor ", p.name);
    PENG_CHECK(it->second.shape() == p.logical_shape, "load_state: ", p.name, " has shape ",
               shape_str(it->second.shape()), ", expected ", shape_str(p.logical_shape));
    const Tensor global = pad_to_global(it->second.to(Device::cpu()).to_dtype(DType::kF32), p);
    p.value.copy_from(take_shard(global, p).to(p.value.device()));
  }
}

std::map<std::string, Tensor> DecoderModel::state() const {
  std::map<std::string, Tensor> out;
  for (const Parameter& p : params_.all()) {
    Tensor whole = p.value.to(Device::cpu()).clone();
    if (!p.shard.replicated()) {  // gathered where the values are (tp's tensor communicator)
      const Tensor mine = p.value.view({-1});
      Tensor all = Tensor::empty({mine.numel() * tp_.size()}, DType::kF32, mine.device());
      tp_.comm->all_gather(mine, all)->wait();
      all = all.to(Device::cpu());
      std::vector<Tensor> pieces;
      for (int i = 0; i < tp_.size(); ++i) {
        pieces.push_back(all.flat_view(i * mine.numel(), p.value.shape()));
      }
      whole = join_shards(pieces, p);
    }
    out[p.name] = cut_to_logical(whole, p);
  }
  return out;
}

int64_t DecoderModel::boundary_rows(int64_t positions) const {
  const bool sp = tp_.sequence_parallel && tp_.size() > 1 && positions % tp_.size() == 0;
  return sp ? positions / tp_.size() : positions;
}

// ---- forward ----

namespace {

// The parameters of `layers` are in use for this scope's lifetime (announced to the
// ParameterSet: ZeRO-3 gathers them on entry and frees them on exit).
class LayersInUse {
 public:
  LayersInUse(ParameterSet& params, std::vector<int> layers, ParameterSet::LayerUse use)
      : params_(params), layers_(std::move(layers)) {
    for (int l : layers_) params_.use_layer(l, use);
  }
  ~LayersInUse() {
    for (int l : layers_) params_.use_layer(l, ParameterSet::LayerUse::kDone);
  }
  LayersInUse(const LayersInUse&) = delete;
  LayersInUse& operator=(const LayersInUse&) = delete;

 private:
  ParameterSet& params_;
  std::vector<int> layers_;
};

constexpr auto kForward = ParameterSet::LayerUse::kForward;
constexpr auto kBackward = ParameterSet::LayerUse::kBackward;

}  // namespace

std::vector<int> DecoderModel::head_layers() {
  const int own = arch_.n_layer, weight = head_weight().layer;
  return weight == own ? std::vector<int>{own} : std::vector<int>{own, weight};
}

const Tensor& DecoderModel::forward_chunk(int chunk, const Tensor& tokens, const Tensor& x_in,
                                          const Tensor& targets, const LossOut& loss) {
  PENG_CHECK(params_.finalized(), "DecoderModel: a parameter table cannot run");
  PENG_CHECK(tokens.ndim() == 2 && tokens.dtype() == DType::kI32, "DecoderModel::forward: tokens ",
             tokens.str());
  PENG_CHECK(tokens.dim(1) <= arch_.max_seq_len, "sequence length ", tokens.dim(1),
             " exceeds the model's maximum (", arch_.max_seq_len, ")");
  batch_ = tokens.dim(0);
  seq_ = tokens.dim(1);
  const int64_t n = batch_ * seq_, c = arch_.n_embd;
  // Sequence parallelism: the residual stream is this rank's n / tp rows (forward-only
  // calls whose rows do not divide, such as sampling, run without it).
  sp_ = boundary_rows(n) != n;
  PENG_CHECK(sp_ || !targets.defined() || !tp_.sequence_parallel || tp_.size() == 1,
             "sequence parallelism: ", n, " positions do not split over ", tp_.size(),
             " tensor-parallel ranks");
  const int64_t rows = sp_ ? n / tp_.size() : n;
  const Tensor* x = &x_in;
  if (has_embedding(chunk)) {
    LayersInUse in_use(params_, {-1}, kForward);
    embed(tokens, rows);
    x = &x0_;
  }
  PENG_CHECK(x->defined() && x->ndim() == 2 && x->dim(0) == rows && x->dim(1) == c,
             "DecoderModel::forward_chunk ", chunk, ": input ", x->str(), ", expected (", rows,
             ", ", c, ")");
  for (size_t b = chunk_begin_[size_t(chunk)]; b < chunk_begin_[size_t(chunk) + 1]; ++b) {
    LayersInUse in_use(params_, {block_layers_[b]}, kForward);
    x = &blocks_[b]->forward(backend_, *x, batch_, seq_, sp_);
  }
  if (!has_head(chunk)) return *x;
  LayersInUse in_use(params_, head_layers(), kForward);
  head_forward(*x, targets.defined() ? targets.view({n}) : targets, loss);
  return none_;
}

// tokens (B, T) -> x0_ (rows, C): this rank's rows of the embedding.
void DecoderModel::embed(const Tensor& tokens, int64_t rows) {
  Backend& be = backend_;
  const Device dev = be.device();
  const int64_t n = batch_ * seq_, c = arch_.n_embd;
  tokens_ = on_device(tokens, dev);  // kept for backward: the caller may reuse its buffer
  ensure_buffer(x0_, {rows, c}, dev);
  const Tensor& wpe = wpe_ >= 0 && tp_.rank() == 0 ? params_.at(wpe_).value : none_;
  if (tp_.size() == 1) {
    Tensor out = x0_.view({batch_, seq_, c});
    be.embedding_forward_shard(tokens_, params_.at(wte_).value, 0, wpe, out);
    return;
  }
  // Each rank's vocabulary rows (the positions on rank 0), summed.
  if (sp_) ensure_buffer(emb_full_, {n, c}, dev);
  Tensor out = (sp_ ? emb_full_ : x0_).view({batch_, seq_, c});
  be.embedding_forward_shard(tokens_, params_.at(wte_).value, vocab_begin_, wpe, out);
  if (sp_) {
    tp_.reduce_scatter_rows(emb_full_, x0_);
  } else {
    tp_.all_reduce_sum(x0_);
  }
}

// The final norm, the logits and, with targets (n), the loss.
void DecoderModel::head_forward(const Tensor& x, const Tensor& targets, const LossOut& loss) {
  Backend& be = backend_;
  const Device dev = be.device();
  const int64_t n = batch_ * seq_, c = arch_.n_embd, vl = vp_ / tp_.size();
  norm_out_ = &final_norm_->forward(be, x);
  if (sp_) {  // the LM head needs every row
    ensure_buffer(norm_full_, {n, c}, dev);
    tp_.all_gather_rows(*norm_out_, norm_full_);
    norm_out_ = &norm_full_;
  }
  ensure_buffer(logits_, {n, vl}, dev);
  be.matmul(*norm_out_, head_weight().value, logits_, {.trans_b = true});
  if (!targets.defined()) {
    targets_ = Tensor();
    if (loss.mean) *loss.mean = 0;
    return;
  }
  PENG_CHECK(targets.numel() == n, "targets ", targets.str(), " for ", n, " positions");
  targets_ = on_device(targets, dev);  // kept for backward
  double sum = 0;
  if (tp_.size() == 1) {
    ensure_buffer(losses_, {n}, dev);
    be.cross_entropy_forward(logits_, targets_, arch_.vocab_size, losses_);
    if (loss.sum) be.sum_into(losses_, *loss.sum);  // stays on the device
    if (!loss.mean) return;
    Tensor host = losses_.to(Device::cpu());
    const float* l = host.data<float>();
    for (int64_t i = 0; i < n; ++i) sum += l[i];
    *loss.mean = sum / double(n);
    return;
  }
  // Vocabulary-parallel: the group's row max, then its sums of exp and target logits.
  ensure_buffer(row_max_, {n}, dev);
  ensure_buffer(ce_stats_, {n, 2}, dev);
  be.cross_entropy_shard_max(logits_, vocab_valid_, row_max_);
  tp_.all_reduce_max(row_max_);
  be.cross_entropy_shard_sums(logits_, targets_, vocab_begin_, vocab_valid_, row_max_, ce_stats_);
  tp_.all_reduce_sum(ce_stats_);
  Tensor mx = row_max_.to(Device::cpu()), st = ce_stats_.to(Device::cpu());
  for (int64_t i = 0; i < n; ++i) {
    const float* r = st.data<float>() + 2 * i;
    sum += std::log(double(r[0])) + double(mx.data<float>()[i]) - double(r[1]);
  }
  if (loss.mean) *loss.mean = sum / double(n);
  if (loss.sum) add_to_accumulator(*loss.sum, sum);
}

// ---- backward ----

const Tensor& DecoderModel::backward_chunk(int chunk, const Tensor& dout, float scale) {
  const int64_t n = batch_ * seq_, c = arch_.n_embd;
  const int64_t rows = sp_ ? n / tp_.size() : n;
  ensure_buffer(dres_, {rows, c}, backend_.device());
  if (has_head(chunk)) {
    LayersInUse in_use(params_, head_layers(), kBackward);
    head_backward(scale);
  } else {
    PENG_CHECK(dout.defined() && dout.shape() == dres_.shape(), "DecoderModel::backward_chunk ",
               chunk, ": output gradient ", dout.str(), ", expected (", rows, ", ", c, ")");
    dres_.copy_from(dout);
  }
  for (size_t b = chunk_begin_[size_t(chunk) + 1]; b-- > chunk_begin_[size_t(chunk)];) {
    LayersInUse in_use(params_, {block_layers_[b]}, kBackward);
    blocks_[b]->backward(backend_, dres_, scale);
    params_.grads_ready_from(block_offsets_[b]);
  }
  if (!has_embedding(chunk)) return dres_;
  LayersInUse in_use(params_, {-1}, kBackward);
  embedding_backward();
  params_.grads_ready_from(0);
  return none_;
}

// From scale * sum of the losses to dL/dx of the head's input, in dres_.
void DecoderModel::head_backward(float scale) {
  Backend& be = backend_;
  const Device dev = be.device();
  const int64_t n = batch_ * seq_, c = arch_.n_embd;
  PENG_CHECK(targets_.defined(), "DecoderModel::backward without a forward with targets");
  Parameter& w = head_weight();
  if (tp_.size() == 1) {
    be.cross_entropy_backward(logits_, targets_, arch_.vocab_size, scale, logits_);
  } else {
    be.cross_entropy_shard_backward(logits_, targets_, vocab_begin_, vocab_valid_, row_max_,
                                    ce_stats_, scale, logits_);
  }
  ensure_buffer(dnorm_, {n, c}, dev);
  be.matmul(logits_, w.value, dnorm_);  // (N, Vl) @ (Vl, C): this shard's part of dL/dnorm
  be.matmul(logits_, *norm_out_, w.grad, {.trans_a = true, .beta = 1.0f});  // (Vl, C) +=
  dres_.zero();
  if (sp_) {  // this rank's rows of the sum over vocabulary shards
    ensure_buffer(dnorm_rows_, {dres_.dim(0), c}, dev);
    tp_.reduce_scatter_rows(dnorm_, dnorm_rows_);
    final_norm_->backward(be, dnorm_rows_, dres_);
  } else {
    tp_.all_reduce_sum(dnorm_);
    final_norm_->backward(be, dnorm_, dres_);
  }
  params_.grads_ready_from(head_offset_);
}

// From dL/dx0 in dres_ into the embeddings' gradients.
void DecoderModel::embedding_backward() {
  Backend& be = backend_;
  const int64_t n = batch_ * seq_, c = arch_.n_embd;
  if (sp_) {  // the embedding saw every row
    ensure_buffer(dres_full_, {n, c}, be.device());
    tp_.all_gather_rows(dres_, dres_full_);
  }
  Tensor dx0 = (sp_ ? dres_full_ : dres_).view({batch_, seq_, c});
  Tensor& dwpe = wpe_ >= 0 && tp_.rank() == 0 ? params_.at(wpe_).grad : none_;
  be.embedding_backward_shard(dx0, tokens_, vocab_begin_, params_.at(wte_).grad, dwpe);
}

// ---- pipelines and sampling ----

std::vector<Tensor*> DecoderModel::activation_slots(int chunk) {
  std::vector<Tensor*> slots;
  if (has_embedding(chunk)) slots.insert(slots.end(), {&tokens_, &x0_, &emb_full_});
  for (size_t b = chunk_begin_[size_t(chunk)]; b < chunk_begin_[size_t(chunk) + 1]; ++b) {
    blocks_[b]->activation_slots(slots);
  }
  if (has_head(chunk)) {
    final_norm_->activation_slots(slots);
    slots.insert(slots.end(), {&norm_full_, &logits_, &targets_, &losses_, &row_max_, &ce_stats_});
  }
  return slots;
}

std::vector<Tensor> DecoderModel::stash_activations(int chunk) {
  std::vector<Tensor> saved;
  for (Tensor* slot : activation_slots(chunk)) {
    saved.push_back(std::move(*slot));
    *slot = Tensor();
  }
  return saved;
}

void DecoderModel::restore_activations(int chunk, std::vector<Tensor>&& saved) {
  std::vector<Tensor*> slots = activation_slots(chunk);
  PENG_CHECK(slots.size() == saved.size(), "restore_activations: ", saved.size(), " tensors for ",
             slots.size(), " slots");
  for (size_t i = 0; i < slots.size(); ++i) *slots[i] = std::move(saved[i]);
}

// ---- memory ----

void DecoderModel::set_recompute(const RecomputePolicy& policy) {
  const int most = *std::max_element(split_.begin(), split_.end());
  PENG_INPUT_CHECK(policy.layers <= most, "training.recompute_layers (", policy.layers,
                   ") is more than the ", most, " layers of the largest pipeline stage");
  for (size_t b = 0; b < blocks_.size(); ++b) {
    size_t chunk = 0;
    while (b >= chunk_begin_[chunk + 1]) ++chunk;
    const int in_stage = int(b - chunk_begin_[chunk]);
    blocks_[b]->set_recompute(policy.layers < 0 || in_stage < policy.layers ? policy
                                                                            : RecomputePolicy{});
  }
}

int64_t DecoderModel::kept_activation_bytes(std::set<const void*>& seen) {
  int64_t bytes = 0;
  for (int chunk = 0; chunk < pipe_.virtual_stages; ++chunk) {
    for (const Tensor* t : activation_slots(chunk)) bytes += count_storage(*t, seen);
  }
  return bytes;
}

// ---- Mixture of Experts ----

void DecoderModel::begin_step() {
  for (auto& b : blocks_) {
    if (b->moe()) b->moe()->begin_step();
  }
}

std::vector<RoutingStats> DecoderModel::routing_stats() const {
  std::vector<RoutingStats> out;
  for (const auto& b : blocks_) {
    if (b->moe()) out.push_back(b->moe()->step_stats());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.layer < b.layer; });
  return out;
}

void DecoderModel::update_routing_biases() {
  for (auto& b : blocks_) {
    if (b->moe()) b->moe()->update_bias();
  }
}

void DecoderModel::set_balance_scope(BalanceScope scope) {
  for (auto& b : blocks_) {
    if (b->moe()) b->moe()->set_balance_scope(scope);
  }
}

Tensor DecoderModel::logits_row(int64_t row) {
  const Tensor mine = logits_.slice(row, row + 1).view({-1});
  if (tp_.size() == 1) return mine.to(Device::cpu());
  Tensor all = Tensor::empty({vp_}, DType::kF32, mine.device());
  tp_.comm->all_gather(mine, all)->wait();
  return all.to(Device::cpu());
}

}  // namespace peng
