#include "models/gpt2/gpt2.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "models/gpt2/hf_checkpoint.h"
#include "models/nn/buffer.h"

namespace peng {

Gpt2Model::Gpt2Model(const Gpt2Config& config, Backend& backend, const TpGroup& tp,
                     const PipelineLayout& pipe)
    : config_(config),
      backend_(backend),
      tp_(tp),
      pipe_(pipe),
      layers_per_stage_(config.n_layer / std::max(1, pipe.stages())),
      vp_(config.padded_vocab(tp.size())),
      vocab_begin_(vp_ / tp.size() * tp.rank()),
      vocab_valid_(std::clamp<int64_t>(config.vocab_size - vocab_begin_, 0, vp_ / tp.size())),
      params_(backend.device()) {
  config_.validate();
  PENG_INPUT_CHECK(config_.n_head % tp.size() == 0, "model.n_head (", config_.n_head,
                   ") is not divisible by parallel.tp (", tp.size(), ")");
  PENG_INPUT_CHECK(config_.n_layer % pipe.stages() == 0, "model.n_layer (", config_.n_layer,
                   ") is not divisible by pp x virtual stages (", pipe.pp, " x ",
                   pipe.virtual_stages, ")");
  const int64_t c = config_.n_embd;
  if (pipe_.first_rank() || pipe_.last_rank()) {
    wte_ = params_.add("wte.weight", {vp_, c}, {.dim = 0, .parts = tp.size(), .index = tp.rank()});
  }
  if (pipe_.first_rank()) wpe_ = params_.add("wpe.weight", {config_.max_seq_len, c});
  for (int chunk = 0; chunk < pipe_.virtual_stages; ++chunk) {
    const int first = (chunk * pipe_.pp + pipe_.rank) * layers_per_stage_;
    for (int l = first; l < first + layers_per_stage_; ++l) {
      block_offsets_.push_back(params_.numel());
      blocks_.push_back(
          std::make_unique<Block>(params_, l, c, config_.n_head, config_.layernorm_eps, tp));
    }
  }
  lnf_offset_ = params_.numel();
  if (pipe_.last_rank())
    ln_f_ = std::make_unique<LayerNorm>(params_, "ln_f", c, config_.layernorm_eps);
  if (tp.sequence_parallel && tp.size() > 1) {  // LayerNorms see this rank's rows only
    for (Parameter& p : params_.all()) p.tp_partial_grad = p.name.find("ln_") != std::string::npos;
  }
  params_.finalize();
}

namespace {
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

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

void Gpt2Model::init_random(uint64_t seed) {
  // The same numbers as one process: the whole model's tensors are drawn in registration
  // order (gpt2_parameter_names); each rank keeps its shards of the ones it holds.
  NormalRng rng(seed);
  const double residual_std = 0.02 / std::sqrt(2.0 * config_.n_layer);
  for (const std::string& name : gpt2_parameter_names(config_)) {
    const bool bias = ends_with(name, ".bias"), ln = name.find("ln_") != std::string::npos;
    const double std = ends_with(name, "c_proj.weight") ? residual_std : 0.02;
    // wte: the real vocabulary's rows are drawn; the padding stays 0.
    const int64_t n = shape_numel(gpt2_parameter_shape(config_, name));
    Parameter* p = params_.find(name);
    if (!p) {  // another pipeline stage's: draw its numbers all the same
      if (!bias && !ln) {
        for (int64_t i = 0; i < n; ++i) rng.next();
      }
      continue;
    }
    Tensor full = Tensor::zeros(p->global_shape);
    float* out = full.data<float>();
    if (!bias && ln) {
      std::fill(out, out + n, 1.0f);
    } else if (!bias) {
      for (int64_t i = 0; i < n; ++i) out[i] = float(rng.next() * std);
    }
    p->value.copy_from(take_shard(full, *p).to(p->value.device()));
  }
}

void Gpt2Model::load_state(const std::map<std::string, Tensor>& tensors) {
  for (Parameter& p : params_.all()) {
    auto it = tensors.find(p.name);
    PENG_CHECK(it != tensors.end(), "load_state: missing tensor ", p.name);
    Tensor src = it->second.to(Device::cpu()).to_dtype(DType::kF32);
    if (p.name == "wte.weight") {
      PENG_CHECK(src.shape() == (Shape{config_.vocab_size, config_.n_embd}),
                 "load_state: wte.weight has shape ", shape_str(src.shape()));
      Tensor padded = Tensor::zeros(p.global_shape);
      padded.slice(0, config_.vocab_size).copy_from(src);
      src = padded;
    }
    PENG_CHECK(src.shape() == p.global_shape, "load_state: ", p.name, " has shape ",
               shape_str(src.shape()), ", expected ", shape_str(p.global_shape));
    p.value.copy_from(take_shard(src, p).to(p.value.device()));
  }
}

std::map<std::string, Tensor> Gpt2Model::state() const {
  std::map<std::string, Tensor> out;
  for (const Parameter& p : params_.all()) {
    Tensor whole = p.value.to(Device::cpu()).clone();
    if (!p.shard.replicated()) {
      Tensor mine = p.value.to(Device::cpu()).clone().view({-1});
      Tensor all = Tensor::empty({mine.numel() * tp_.size()});
      tp_.comm->all_gather(mine, all)->wait();
      std::vector<Tensor> pieces;
      for (int i = 0; i < tp_.size(); ++i) {
        pieces.push_back(all.flat_view(i * mine.numel(), p.value.shape()));
      }
      whole = join_shards(pieces, p);
    }
    out[p.name] = p.name == "wte.weight" ? whole.slice(0, config_.vocab_size).clone() : whole;
  }
  return out;
}

int64_t gpt2_num_params(const Gpt2Config& config, bool include_position_embedding) {
  int64_t n = 0;
  for (const std::string& name : gpt2_parameter_names(config)) {
    if (name != "wpe.weight" || include_position_embedding) {
      n += shape_numel(gpt2_parameter_shape(config, name));
    }
  }
  return n;
}

double Gpt2Model::forward(const Tensor& tokens, const Tensor& targets) {
  PENG_CHECK(pipe_.stages() == 1,
             "Gpt2Model::forward under pipeline parallelism: use forward_chunk");
  double loss = 0;
  forward_chunk(0, tokens, none_, targets, &loss);
  return loss;
}

void Gpt2Model::backward(float scale) {
  PENG_CHECK(pipe_.stages() == 1,
             "Gpt2Model::backward under pipeline parallelism: use backward_chunk");
  backward_chunk(0, none_, scale);
}

const Tensor& Gpt2Model::forward_chunk(int chunk, const Tensor& tokens, const Tensor& x_in,
                                       const Tensor& targets, double* loss) {
  PENG_CHECK(tokens.ndim() == 2 && tokens.dtype() == DType::kI32, "Gpt2Model::forward: tokens ",
             tokens.str());
  PENG_CHECK(tokens.dim(1) <= config_.max_seq_len, "sequence length ", tokens.dim(1),
             " exceeds the model's position embedding (", config_.max_seq_len, ")");
  Backend& be = backend_;
  const Device dev = be.device();
  batch_ = tokens.dim(0);
  seq_ = tokens.dim(1);
  const int64_t n = batch_ * seq_, c = config_.n_embd, vl = vp_ / tp_.size();
  // Sequence parallelism: the residual stream is this rank's n / tp rows (forward-only
  // calls whose rows do not divide, such as sampling, run without it).
  sp_ = boundary_rows(n) != n;
  PENG_CHECK(sp_ || !targets.defined() || !tp_.sequence_parallel || tp_.size() == 1,
             "sequence parallelism: ", n, " positions do not split over ", tp_.size(),
             " tensor-parallel ranks");
  const int64_t rows = sp_ ? n / tp_.size() : n;
  const Tensor* x = &x_in;
  if (has_embedding(chunk)) {
    tokens_ = tokens.to(dev).clone();  // kept for backward: the caller may reuse its buffer
    ensure_buffer(x0_, {rows, c}, dev);
    if (tp_.size() == 1) {
      Tensor out = x0_.view({batch_, seq_, c});
      be.embedding_forward(tokens_, params_.at(wte_).value, params_.at(wpe_).value, out);
    } else {  // each rank's vocabulary rows (wpe on rank 0), summed
      if (sp_) ensure_buffer(emb_full_, {n, c}, dev);
      Tensor out = (sp_ ? emb_full_ : x0_).view({batch_, seq_, c});
      be.embedding_forward_shard(tokens_, params_.at(wte_).value, vocab_begin_,
                                 tp_.rank() == 0 ? params_.at(wpe_).value : none_, out);
      if (sp_) {
        tp_.reduce_scatter_rows(emb_full_, x0_);
      } else {
        tp_.all_reduce_sum(x0_);
      }
    }
    x = &x0_;
  }
  PENG_CHECK(x->defined() && x->ndim() == 2 && x->dim(0) == rows && x->dim(1) == c,
             "Gpt2Model::forward_chunk ", chunk, ": input ", x->str(), ", expected (", rows, ", ",
             c, ")");
  for (int b = chunk * layers_per_stage_; b < (chunk + 1) * layers_per_stage_; ++b) {
    x = &blocks_[size_t(b)]->forward(be, *x, batch_, seq_, sp_);
  }
  if (!has_head(chunk)) return *x;

  lnf_out_ = &ln_f_->forward(be, *x);
  if (sp_) {  // the LM head needs every row
    ensure_buffer(lnf_full_, {n, c}, dev);
    tp_.all_gather_rows(*lnf_out_, lnf_full_);
    lnf_out_ = &lnf_full_;
  }
  ensure_buffer(logits_, {n, vl}, dev);
  be.matmul(*lnf_out_, params_.at(wte_).value, logits_, {.trans_b = true});
  if (!targets.defined()) {
    targets_ = Tensor();
    if (loss) *loss = 0;
    return none_;
  }
  PENG_CHECK(targets.shape() == tokens.shape(), "targets ", targets.str(), " vs tokens ",
             tokens.str());
  targets_ = targets.to(dev).clone().view({n});  // kept for backward
  double sum = 0;
  if (tp_.size() == 1) {
    ensure_buffer(losses_, {n}, dev);
    be.cross_entropy_forward(logits_, targets_, config_.vocab_size, losses_);
    Tensor host = losses_.to(Device::cpu());
    const float* l = host.data<float>();
    for (int64_t i = 0; i < n; ++i) sum += l[i];
  } else {  // vocabulary-parallel: the group's row max, then its sums of exp and target logits
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
  }
  if (loss) *loss = sum / double(n);
  return none_;
}

const Tensor& Gpt2Model::backward_chunk(int chunk, const Tensor& dout, float scale) {
  Backend& be = backend_;
  const Device dev = be.device();
  const int64_t n = batch_ * seq_, c = config_.n_embd;
  const int64_t rows = sp_ ? n / tp_.size() : n;
  ensure_buffer(dres_, {rows, c}, dev);
  if (has_head(chunk)) {
    PENG_CHECK(targets_.defined(), "Gpt2Model::backward without a forward with targets");
    Parameter& wte = params_.at(wte_);
    if (tp_.size() == 1) {
      be.cross_entropy_backward(logits_, targets_, config_.vocab_size, scale, logits_);
    } else {
      be.cross_entropy_shard_backward(logits_, targets_, vocab_begin_, vocab_valid_, row_max_,
                                      ce_stats_, scale, logits_);
    }
    ensure_buffer(dlnf_, {n, c}, dev);
    be.matmul(logits_, wte.value, dlnf_);  // (N, Vl) @ (Vl, C): this shard's part of dL/dlnf
    be.matmul(logits_, *lnf_out_, wte.grad, {.trans_a = true, .beta = 1.0f});  // (Vl, C) +=
    dres_.zero();
    if (sp_) {  // this rank's rows of the sum over vocabulary shards
      ensure_buffer(dlnf_rows_, {rows, c}, dev);
      tp_.reduce_scatter_rows(dlnf_, dlnf_rows_);
      ln_f_->backward(be, dlnf_rows_, dres_);
    } else {
      tp_.all_reduce_sum(dlnf_);
      ln_f_->backward(be, dlnf_, dres_);
    }
    params_.grads_ready_from(lnf_offset_);
  } else {
    PENG_CHECK(dout.defined() && dout.shape() == dres_.shape(), "Gpt2Model::backward_chunk ", chunk,
               ": output gradient ", dout.str(), ", expected (", rows, ", ", c, ")");
    dres_.copy_from(dout);
  }
  for (int b = (chunk + 1) * layers_per_stage_ - 1; b >= chunk * layers_per_stage_; --b) {
    blocks_[size_t(b)]->backward(be, dres_);
    params_.grads_ready_from(block_offsets_[size_t(b)]);
  }
  if (!has_embedding(chunk)) return dres_;
  if (sp_) {  // the embedding saw every row
    ensure_buffer(dres_full_, {n, c}, dev);
    tp_.all_gather_rows(dres_, dres_full_);
  }
  Tensor dx0 = (sp_ ? dres_full_ : dres_).view({batch_, seq_, c});
  Parameter& wte = params_.at(wte_);
  if (tp_.size() == 1) {
    be.embedding_backward(dx0, tokens_, wte.grad, params_.at(wpe_).grad);
  } else {
    be.embedding_backward_shard(dx0, tokens_, vocab_begin_, wte.grad, params_.at(wpe_).grad);
  }
  params_.grads_ready_from(0);
  return none_;
}

std::vector<Tensor*> Gpt2Model::activation_slots(int chunk) {
  std::vector<Tensor*> slots;
  if (has_embedding(chunk)) slots.insert(slots.end(), {&tokens_, &x0_, &emb_full_});
  for (int b = chunk * layers_per_stage_; b < (chunk + 1) * layers_per_stage_; ++b) {
    blocks_[size_t(b)]->activation_slots(slots);
  }
  if (has_head(chunk)) {
    ln_f_->activation_slots(slots);
    slots.insert(slots.end(), {&lnf_full_, &logits_, &targets_, &losses_, &row_max_, &ce_stats_});
  }
  return slots;
}

std::vector<Tensor> Gpt2Model::stash_activations(int chunk) {
  std::vector<Tensor> saved;
  for (Tensor* slot : activation_slots(chunk)) {
    saved.push_back(std::move(*slot));
    *slot = Tensor();
  }
  return saved;
}

void Gpt2Model::restore_activations(int chunk, std::vector<Tensor>&& saved) {
  std::vector<Tensor*> slots = activation_slots(chunk);
  PENG_CHECK(slots.size() == saved.size(), "restore_activations: ", saved.size(), " tensors for ",
             slots.size(), " slots");
  for (size_t i = 0; i < slots.size(); ++i) *slots[i] = std::move(saved[i]);
}

Tensor Gpt2Model::logits_row(int64_t row) {
  Tensor mine = logits_.slice(row, row + 1).to(Device::cpu()).clone().view({-1});
  if (tp_.size() == 1) return mine;
  Tensor all = Tensor::empty({vp_});
  tp_.comm->all_gather(mine, all)->wait();
  return all;
}

}  // namespace peng
