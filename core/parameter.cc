#include "core/parameter.h"

#include <algorithm>

namespace peng {

Shape shard_shape(const std::string& name, const Shape& global_shape, const ShardSpec& spec) {
  if (spec.replicated()) return global_shape;
  PENG_CHECK(spec.dim < int(global_shape.size()) && spec.index >= 0 && spec.index < spec.parts &&
                 spec.blocks >= 1,
             "parameter ", name, ": bad shard spec");
  const int64_t g = global_shape[size_t(spec.dim)];
  PENG_CHECK(g % (int64_t(spec.blocks) * spec.parts) == 0, "parameter ", name, ": dimension ",
             spec.dim, " of size ", g, " does not split into ", spec.blocks, " x ", spec.parts,
             " equal pieces");
  Shape local = global_shape;
  local[size_t(spec.dim)] = g / spec.parts;
  return local;
}

namespace {
// Copies between a whole tensor (outer, blocks * parts * k, inner) and piece `index`
// (outer, blocks * k, inner) of its split dimension, in either direction.
void copy_piece(float* whole, float* piece, const Shape& global, const ShardSpec& s, int index,
                bool to_piece) {
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < s.dim; ++d) outer *= global[size_t(d)];
  for (size_t d = size_t(s.dim) + 1; d < global.size(); ++d) inner *= global[d];
  const int64_t g = global[size_t(s.dim)], k = g / (int64_t(s.blocks) * s.parts);
  for (int64_t o = 0; o < outer; ++o) {
    for (int b = 0; b < s.blocks; ++b) {
      const int64_t span = k * inner;
      float* w = whole + (o * g + (int64_t(b) * s.parts + index) * k) * inner;
      float* p = piece + (o * int64_t(s.blocks) * k + int64_t(b) * k) * inner;
      if (to_piece) {
        std::copy(w, w + span, p);
      } else {
        std::copy(p, p + span, w);
      }
    }
  }
}
}  // namespace

Tensor take_shard(const Tensor& full, const Parameter& p) {
  PENG_CHECK(full.shape() == p.global_shape, "parameter ", p.name, ": expected ",
             shape_str(p.global_shape), ", got ", full.str());
  Tensor src = full.to(Device::cpu()).to_dtype(DType::kF32);
  if (p.shard.replicated()) return src.clone();
  Tensor out = Tensor::empty(shard_shape(p.name, p.global_shape, p.shard));
  copy_piece(src.data<float>(), out.data<float>(), p.global_shape, p.shard, p.shard.index, true);
  return out;
}

Tensor join_shards(const std::vector<Tensor>& pieces, const Parameter& p) {
  if (p.shard.replicated()) return pieces.at(0).to(Device::cpu()).clone();
  PENG_CHECK(int(pieces.size()) == p.shard.parts, "parameter ", p.name, ": ", pieces.size(),
             " pieces for ", p.shard.parts, " parts");
  Tensor out = Tensor::empty(p.global_shape);
  for (int i = 0; i < p.shard.parts; ++i) {
    Tensor piece = pieces[size_t(i)].to(Device::cpu()).clone();
    copy_piece(out.data<float>(), piece.data<float>(), p.global_shape, p.shard, i, false);
  }
  return out;
}

std::vector<ParamSegment> split_at_parameters(const ParameterSet& params,
                                              const std::vector<FlatSpan>& spans) {
  std::vector<ParamSegment> out;
  for (const FlatSpan& s : spans) {
    PENG_CHECK(s.offset >= 0 && s.offset + s.numel <= params.numel() && s.state_offset >= 0,
               "span [", s.offset, ", +", s.numel, ") outside the parameters");
    for (const Parameter& p : params.all()) {
      const int64_t lo = std::max(s.offset, p.offset);
      const int64_t hi = std::min(s.offset + s.numel, p.offset + p.value.numel());
      if (lo < hi) out.push_back({{lo, hi - lo, s.state_offset + (lo - s.offset)}, &p});
    }
  }
  return out;
}

int ParameterSet::add(const std::string& name, const Shape& shape, const ShardSpec& shard) {
  PENG_CHECK(!values_.defined(), "ParameterSet::add(", name, ") after finalize()");
  PENG_CHECK(!index_.count(name), "duplicate parameter ", name);
  Parameter p;
  p.name = name;
  p.global_shape = shape;
  p.shard = shard;
  p.offset = numel_;
  p.weight_decay = shape.size() >= 2;
  numel_ += shape_numel(shard_shape(name, shape, shard));
  index_[name] = int(params_.size());
  params_.push_back(std::move(p));
  return int(params_.size()) - 1;
}

void ParameterSet::finalize() {
  PENG_CHECK(!values_.defined(), "ParameterSet::finalize() called twice");
  values_ = Tensor::zeros({numel_}, DType::kF32, device_);
  grads_ = Tensor::zeros({numel_}, DType::kF32, device_);
  for (Parameter& p : params_) {
    const Shape local = shard_shape(p.name, p.global_shape, p.shard);
    p.value = values_.flat_view(p.offset, local);
    p.grad = grads_.flat_view(p.offset, local);
  }
}

Parameter* ParameterSet::find(const std::string& name) {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &params_[size_t(it->second)];
}

Parameter& ParameterSet::get(const std::string& name) {
  auto it = index_.find(name);
  PENG_CHECK(it != index_.end(), "no parameter named ", name);
  return params_[size_t(it->second)];
}

const Parameter& ParameterSet::get(const std::string& name) const {
  return const_cast<ParameterSet*>(this)->get(name);
}

}  // namespace peng
