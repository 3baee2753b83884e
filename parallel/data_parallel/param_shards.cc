#include "peng/parallel/data_parallel/param_shards.h"

#include <algorithm>

#include "peng/core/error.h"

namespace peng {

std::vector<FlatSpan> layer_units(const ParameterSet& params) {
  std::vector<FlatSpan> units;
  const Parameter* prev = nullptr;
  for (const Parameter& p : params.all()) {
    const int64_t n = p.numel;
    const bool joins = prev && prev->layer == p.layer && prev->tie_group.empty() &&
                       p.tie_group.empty() && prev->expert_parallel == p.expert_parallel &&
                       prev->trained == p.trained;
    if (joins) {
      units.back().numel += n;
    } else {
      units.push_back({p.offset, n, 0});
    }
    prev = &p;
  }
  return units;
}

namespace {

// The parameter starting at flat `offset`.
const Parameter& parameter_at(const ParameterSet& params, int64_t offset) {
  for (const Parameter& p : params.all()) {
    if (p.offset == offset) return p;
  }
  PENG_CHECK(false, "ParamShards: no parameter starts at flat offset ", offset);
  return params.all().front();
}

}  // namespace

ParamShards::ParamShards(ParameterSet& params, GradReducer& reducer,
                         const std::map<const Communicator*, Communicator*>& gathers,
                         std::set<int> keep)
    : params_(params), reducer_(reducer), sharded_(!gathers.empty()), keep_(std::move(keep)) {
  const std::vector<GradReducer::Bucket>& buckets = reducer.buckets();
  device_ = params.flat_values().device();
  unit_of_bucket_.assign(buckets.size(), -1);
  for (size_t i = buckets.size(); i-- > 0;) {  // buckets run from the end: units in flat order
    const Parameter& first = parameter_at(params, buckets[i].offset);
    Unit u;
    u.bucket = i;
    u.layer = first.layer;
    if (sharded_) {
      const auto g = gathers.find(buckets[i].group);
      PENG_CHECK(g != gathers.end() && g->second->size() == buckets[i].group->size(),
                 "ZeRO-3: no gather group for the reduction group ", buckets[i].group->name());
      u.gather_group = g->second;
      u.replicated = !first.trained;  // layer_units() keeps buffers in units of their own
      if (u.replicated) u.values = Tensor::zeros({buckets[i].padded}, DType::kF32, device_);
    }
    unit_of_bucket_[i] = int(units_.size());
    units_.push_back(std::move(u));
    layers_.push_back(units_.back().layer);
  }
  std::sort(layers_.begin(), layers_.end());
  layers_.erase(std::unique(layers_.begin(), layers_.end()), layers_.end());
  if (sharded_) {
    values_ = Tensor::zeros({reducer.shard_grads().numel()}, DType::kF32, device_);
    release();
  } else {
    params.release_flat(/*values=*/false);
  }
  params.set_layer_hook([this](int layer, ParameterSet::LayerUse use) { on_use(layer, use); });
  reducer.set_grad_source([this](size_t bucket) { return take_grads(bucket); });
}

ParamShards::~ParamShards() {
  params_.set_layer_hook({});
  reducer_.set_grad_source({});
  for (Unit& u : units_) {
    if (u.pending) u.pending->wait();  // never leave a collective writing freed memory
  }
}

void ParamShards::count(int64_t bytes) {
  bytes_ += bytes;
  peak_bytes_ = std::max(peak_bytes_, bytes_);
}

void ParamShards::start_gather(Unit& u) {
  if (u.values.defined()) return;  // gathered, or a prefetch in flight
  const GradReducer::Bucket& b = reducer_.buckets()[u.bucket];
  const int64_t chunk = b.padded / u.gather_group->size();
  u.values = Tensor::empty({b.padded}, DType::kF32, device_);
  count(int64_t(u.values.nbytes()));
  u.pending = u.gather_group->all_gather(values_.flat_view(b.shard_offset, {chunk}), u.values);
}

void ParamShards::finish_gather(Unit& u) {
  start_gather(u);
  if (!u.pending) return;
  u.pending->wait();
  u.pending.reset();
  const GradReducer::Bucket& b = reducer_.buckets()[u.bucket];
  params_.bind(b.offset, b.numel, &u.values, nullptr);
}

void ParamShards::free_values(Unit& u) {
  if (u.pending) u.pending->wait();
  u.pending.reset();
  if (!u.values.defined() || u.replicated) return;
  count(-int64_t(u.values.nbytes()));
  u.values = Tensor();
  const GradReducer::Bucket& b = reducer_.buckets()[u.bucket];
  params_.bind(b.offset, b.numel, &u.values, nullptr);
}

void ParamShards::on_use(int layer, ParameterSet::LayerUse use) {
  const bool backward = use == ParameterSet::LayerUse::kBackward;
  for (Unit& u : units_) {
    if (u.layer != layer) continue;
    if (use == ParameterSet::LayerUse::kDone) {
      if (sharded_ && --u.uses == 0 && !keep_.count(layer)) free_values(u);
      continue;
    }
    if (sharded_) {
      ++u.uses;
      finish_gather(u);
    }
    if (backward && !u.grads.defined()) {
      const GradReducer::Bucket& b = reducer_.buckets()[u.bucket];
      u.grads = Tensor::zeros({b.padded}, DType::kF32, device_);
      count(int64_t(u.grads.nbytes()));
      params_.bind(b.offset, b.numel, nullptr, &u.grads);
    }
  }
  if (!sharded_ || use == ParameterSet::LayerUse::kDone) return;
  // Prefetch when the pass moves its way (not for a layer it reads out of order: a tied
  // head reading the embedding).
  const bool in_order = last_use_ == ParameterSet::LayerUse::kDone || last_use_ != use ||
                        (backward ? layer <= last_layer_ : layer >= last_layer_);
  last_use_ = use;
  last_layer_ = layer;
  if (in_order) prefetch_after(layer, backward);
}

// The next layer this rank holds in the pass's direction (forward: up, backward: down).
void ParamShards::prefetch_after(int layer, bool backward) {
  auto it = std::lower_bound(layers_.begin(), layers_.end(), layer);
  if (it == layers_.end() || *it != layer) return;
  if (backward ? it == layers_.begin() : it + 1 == layers_.end()) return;
  const int next = backward ? *(it - 1) : *(it + 1);
  for (Unit& u : units_) {
    if (u.layer == next) start_gather(u);
  }
}

Tensor ParamShards::take_grads(size_t bucket) {
  Unit& u = units_[size_t(unit_of_bucket_[bucket])];
  const GradReducer::Bucket& b = reducer_.buckets()[bucket];
  Tensor g = std::move(u.grads);
  u.grads = Tensor();
  if (!g.defined()) return Tensor::zeros({b.padded}, DType::kF32, device_);
  count(-int64_t(g.nbytes()));  // the reducer frees it once reduced
  params_.bind(b.offset, b.numel, nullptr, &u.grads);
  return g;
}

Tensor ParamShards::chunk_of(Tensor& shard, const Parameter& p) const {
  for (const GradReducer::Bucket& b : reducer_.buckets()) {
    if (b.offset != p.offset) continue;
    PENG_CHECK(b.numel == p.numel, "ZeRO-3: ", p.name, " is not a unit of its own");
    return shard.flat_view(b.shard_offset, {b.padded / b.group->size()});
  }
  PENG_CHECK(false, "ZeRO-3: no unit starts at ", p.name);
  return Tensor();
}

void ParamShards::end_step() {
  for (Unit& u : units_) {
    PENG_CHECK(u.uses == 0, "ZeRO-3: layer ", u.layer, " still in use at the step's end");
    free_values(u);
    if (!u.replicated) continue;
    // A buffer the model updates itself (every rank alike): its chunk follows for saves.
    const GradReducer::Bucket& b = reducer_.buckets()[u.bucket];
    const int r = b.group->rank();
    const int64_t chunk = b.padded / b.group->size();
    values_.flat_view(b.shard_offset, {chunk}).copy_from(u.values.flat_view(r * chunk, {chunk}));
  }
}

void ParamShards::materialize() {
  PENG_CHECK(sharded_, "ParamShards::materialize: the values are not sharded (ZeRO 2)");
  end_step();
  params_.materialize_flat(/*grads=*/false);  // loads and exports need no gradients
  Tensor& flat = params_.flat_values();
  for (Unit& u : units_) {
    finish_gather(u);
    const GradReducer::Bucket& b = reducer_.buckets()[u.bucket];
    flat.flat_view(b.offset, {b.numel}).copy_from(u.values.flat_view(0, {b.numel}));
    free_values(u);
  }
  params_.bind(0, params_.numel(), &flat, nullptr);
}

void ParamShards::release() {
  PENG_CHECK(sharded_, "ParamShards::release: the values are not sharded (ZeRO 2)");
  const Tensor& flat = params_.flat_values();
  for (const Unit& u : units_) {
    const GradReducer::Bucket& b = reducer_.buckets()[u.bucket];
    const int r = b.group->rank();
    const int64_t chunk = b.padded / b.group->size();
    const int64_t valid = std::clamp<int64_t>(b.numel - r * chunk, 0, chunk);
    if (valid > 0) {
      values_.flat_view(b.shard_offset, {valid})
          .copy_from(flat.flat_view(b.offset + r * chunk, {valid}));
    }
    if (u.replicated)
      u.values.flat_view(0, {b.numel}).copy_from(flat.flat_view(b.offset, {b.numel}));
  }
  params_.release_flat();
  for (Unit& u : units_) {  // replicated units stay bound
    const GradReducer::Bucket& b = reducer_.buckets()[u.bucket];
    if (u.replicated) params_.bind(b.offset, b.numel, &u.values, nullptr);
  }
}

}  // namespace peng
