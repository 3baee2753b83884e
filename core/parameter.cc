#include "peng/core/parameter.h"

#include <algorithm>

namespace peng {

std::vector<ShardBlock> ShardSpec::layout(int64_t extent) const {
  if (fused.empty()) return std::vector<ShardBlock>(size_t(blocks), {extent / blocks, parts});
  std::vector<ShardBlock> out = fused;
  for (ShardBlock& b : out) b.pieces = b.pieces > 0 ? b.pieces : parts;
  return out;
}

Shape shard_shape(const std::string& name, const Shape& global_shape, const ShardSpec& spec) {
  if (spec.replicated()) return global_shape;
  PENG_CHECK(spec.dim < int(global_shape.size()) && spec.index >= 0 && spec.index < spec.parts &&
                 spec.blocks >= 1,
             "parameter ", name, ": bad shard spec");
  const int64_t g = global_shape[size_t(spec.dim)];
  if (spec.fused.empty()) {
    PENG_CHECK(g % (int64_t(spec.blocks) * spec.parts) == 0, "parameter ", name, ": dimension ",
               spec.dim, " of size ", g, " does not split into ", spec.blocks, " x ", spec.parts,
               " equal pieces");
  }
  int64_t total = 0, local = 0;
  for (const ShardBlock& b : spec.layout(g)) {
    PENG_CHECK(b.pieces >= 1 && spec.parts % b.pieces == 0 && b.size % b.pieces == 0, "parameter ",
               name, ": a block of ", b.size, " along dimension ", spec.dim,
               " does not split into ", b.pieces, " equal pieces over ", spec.parts, " ranks");
    total += b.size;
    local += b.size / b.pieces;
  }
  PENG_CHECK(total == g, "parameter ", name, ": blocks of ", total, " along dimension ", spec.dim,
             " of size ", g);
  Shape out = global_shape;
  out[size_t(spec.dim)] = local;
  return out;
}

namespace {
// Copies between a whole tensor (outer, g, inner) and the shard (outer, l, inner) of group
// rank `index` along the split dimension, in either direction.
void copy_piece(float* whole, float* piece, const Shape& global, const ShardSpec& s, int index,
                bool to_piece) {
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < s.dim; ++d) outer *= global[size_t(d)];
  for (size_t d = size_t(s.dim) + 1; d < global.size(); ++d) inner *= global[d];
  const int64_t g = global[size_t(s.dim)];
  const std::vector<ShardBlock> blocks = s.layout(g);
  int64_t l = 0;
  for (const ShardBlock& b : blocks) l += b.size / b.pieces;
  ShardSpec rank = s;
  rank.index = index;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t whole_at = 0, piece_at = 0;  // block starts along the dimension
    for (const ShardBlock& b : blocks) {
      const int64_t k = b.size / b.pieces;
      float* w = whole + (o * g + whole_at + rank.piece(b) * k) * inner;
      float* p = piece + (o * l + piece_at) * inner;
      if (to_piece) {
        std::copy(w, w + k * inner, p);
      } else {
        std::copy(p, p + k * inner, w);
      }
      whole_at += b.size;
      piece_at += k;
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
  for (int i = 0; i < p.shard.parts; ++i) {  // replicas write the same values again
    Tensor piece = pieces[size_t(i)].to(Device::cpu()).clone();
    copy_piece(out.data<float>(), piece.data<float>(), p.global_shape, p.shard, i, false);
  }
  return out;
}

std::vector<PaddedRun> padded_runs(const std::string& name, const Shape& g, const Shape& l,
                                   const ShardSpec& spec, int* dim) {
  *dim = -1;
  PENG_CHECK(g.size() == l.size(), name, ": logical shape ", shape_str(l), " and global shape ",
             shape_str(g));
  for (size_t d = 0; d < g.size(); ++d) {
    if (l[d] == g[d]) continue;
    PENG_CHECK(*dim < 0 && l[d] < g[d], name, ": logical shape ", shape_str(l),
               " is not its global shape ", shape_str(g), " padded along one dimension");
    *dim = int(d);
  }
  if (*dim < 0) return {};
  if (spec.dim != *dim || spec.fused.empty()) return {{0, 0, l[size_t(*dim)]}};
  std::vector<PaddedRun> runs;
  int64_t global_at = 0, logical_at = 0;
  for (const ShardBlock& b : spec.fused) {
    runs.push_back({global_at, logical_at, b.real()});
    global_at += b.size;
    logical_at += b.real();
  }
  PENG_CHECK(global_at == g[size_t(*dim)] && logical_at == l[size_t(*dim)], name, ": blocks of ",
             global_at, " (", logical_at, " real) along dimension ", *dim, " for shapes ",
             shape_str(g), " / ", shape_str(l));
  return runs;
}

namespace {
// Copies the real elements between a logical and a global tensor, either direction.
void copy_runs(const Parameter& p, float* logical, float* global, bool to_global) {
  int dim = -1;
  const std::vector<PaddedRun> runs =
      padded_runs(p.name, p.global_shape, p.logical_shape, p.shard, &dim);
  const Shape &g = p.global_shape, &l = p.logical_shape;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < dim; ++d) outer *= g[size_t(d)];
  for (size_t d = size_t(dim) + 1; d < g.size(); ++d) inner *= g[d];
  for (int64_t o = 0; o < outer; ++o) {
    for (const PaddedRun& r : runs) {
      float* lp = logical + (o * l[size_t(dim)] + r.logical_begin) * inner;
      float* gp = global + (o * g[size_t(dim)] + r.global_begin) * inner;
      if (to_global) {
        std::copy(lp, lp + r.length * inner, gp);
      } else {
        std::copy(gp, gp + r.length * inner, lp);
      }
    }
  }
}
}  // namespace

Tensor pad_to_global(const Tensor& logical, const Parameter& p) {
  PENG_CHECK(logical.shape() == p.logical_shape, "parameter ", p.name, ": expected ",
             shape_str(p.logical_shape), ", got ", logical.str());
  if (p.logical_shape == p.global_shape) return logical;
  Tensor src = logical.to(Device::cpu()).to_dtype(DType::kF32);
  Tensor out = Tensor::zeros(p.global_shape);
  copy_runs(p, src.data<float>(), out.data<float>(), true);
  return out;
}

Tensor cut_to_logical(const Tensor& global, const Parameter& p) {
  if (p.logical_shape == p.global_shape) return global;
  Tensor src = global.to(Device::cpu()).to_dtype(DType::kF32);
  Tensor out = Tensor::empty(p.logical_shape);
  copy_runs(p, out.data<float>(), src.data<float>(), false);
  return out;
}

namespace {
// The local flat ranges of the blocks `select` picks (by block index), merged where
// adjacent.
std::vector<LocalRange> block_ranges(const Parameter& p,
                                     const std::function<bool(size_t block)>& select) {
  const ShardSpec& s = p.shard;
  const Shape local = shard_shape(p.name, p.global_shape, s);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < s.dim; ++d) outer *= local[size_t(d)];
  for (size_t d = size_t(s.dim) + 1; d < local.size(); ++d) inner *= local[d];
  const int64_t l = local[size_t(s.dim)];
  std::vector<LocalRange> out;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t at = 0;
    const std::vector<ShardBlock> blocks = s.layout(p.global_shape[size_t(s.dim)]);
    for (size_t i = 0; i < blocks.size(); ++i) {
      const int64_t k = blocks[i].size / blocks[i].pieces;
      if (select(i)) {
        const LocalRange r{(o * l + at) * inner, (o * l + at + k) * inner};
        if (!out.empty() && out.back().end == r.begin) {
          out.back().end = r.end;
        } else {
          out.push_back(r);
        }
      }
      at += k;
    }
  }
  return out;
}
}  // namespace

std::vector<LocalRange> owned_ranges(const Parameter& p, int tp_rank) {
  const int64_t n = shape_numel(shard_shape(p.name, p.global_shape, p.shard));
  if (!p.tie_primary) return {};
  if (p.shard.replicated()) {
    if (tp_rank > 0) return {};
    return {{0, n}};
  }
  const std::vector<ShardBlock> blocks = p.shard.layout(p.global_shape[size_t(p.shard.dim)]);
  return block_ranges(p, [&](size_t i) { return p.shard.replica(blocks[i]) == 0; });
}

std::vector<ReplicaRange> replica_ranges(const Parameter& p) {
  if (p.shard.replicated()) return {};
  std::vector<ReplicaRange> out;
  const std::vector<ShardBlock> blocks = p.shard.layout(p.global_shape[size_t(p.shard.dim)]);
  for (size_t b = 0; b < blocks.size(); ++b) {
    if (blocks[b].pieces == p.shard.parts) continue;
    for (const LocalRange& r : block_ranges(p, [b](size_t i) { return i == b; }))
      out.push_back({r, p.shard.parts / blocks[b].pieces});
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
      const int64_t hi = std::min(s.offset + s.numel, p.offset + p.numel);
      if (lo < hi) out.push_back({{lo, hi - lo, s.state_offset + (lo - s.offset)}, &p});
    }
  }
  return out;
}

std::vector<ParamSegment> restrict_segments(
    const std::vector<ParamSegment>& segments,
    const std::function<std::vector<LocalRange>(const Parameter&)>& keep) {
  std::vector<ParamSegment> out;
  for (const ParamSegment& s : segments) {
    const Parameter& p = *s.param;
    const int64_t begin = s.span.offset - p.offset, end = begin + s.span.numel;
    for (const LocalRange& r : keep(p)) {
      const int64_t lo = std::max(begin, r.begin), hi = std::min(end, r.end);
      if (lo < hi) {
        out.push_back({{p.offset + lo, hi - lo, s.span.state_offset + (lo - begin)}, s.param});
      }
    }
  }
  return out;
}

int ParameterSet::add(const std::string& name, const Shape& shape, const ShardSpec& shard) {
  PENG_CHECK(!finalized_, "ParameterSet::add(", name, ") after finalize()");
  PENG_CHECK(!index_.count(name), "duplicate parameter ", name);
  Parameter p;
  p.name = name;
  p.global_shape = shape;
  p.logical_shape = shape;
  p.shard = shard;
  p.offset = numel_;
  p.numel = shape_numel(shard_shape(name, shape, shard));
  p.weight_decay = shape.size() >= 2;
  numel_ += p.numel;
  index_[name] = int(params_.size());
  params_.push_back(std::move(p));
  return int(params_.size()) - 1;
}

void ParameterSet::finalize() {
  PENG_CHECK(!finalized_, "ParameterSet::finalize() called twice");
  finalized_ = true;
  materialize_flat();
}

void ParameterSet::materialize_flat(bool grads) {
  PENG_CHECK(finalized_ && !values_.defined() && !grads_.defined(),
             "ParameterSet::materialize_flat: already flat");
  values_ = Tensor::zeros({numel_}, DType::kF32, device_);
  if (grads) grads_ = Tensor::zeros({numel_}, DType::kF32, device_);
  bind(0, numel_, &values_, &grads_);
}

void ParameterSet::release_flat(bool values) {
  grads_ = Tensor();
  for (Parameter& p : params_) p.grad = Tensor();
  if (!values) return;
  values_ = Tensor();
  for (Parameter& p : params_) p.value = Tensor();
}

void ParameterSet::bind(int64_t offset, int64_t numel, const Tensor* values, const Tensor* grads) {
  for (Parameter& p : params_) {
    if (p.offset < offset || p.offset >= offset + numel) continue;
    const Shape local = shard_shape(p.name, p.global_shape, p.shard);
    PENG_CHECK(p.offset + p.numel <= offset + numel, "ParameterSet::bind: ", p.name,
               " crosses the end of [", offset, ", +", numel, ")");
    if (values)
      p.value = values->defined() ? values->flat_view(p.offset - offset, local) : Tensor();
    if (grads) p.grad = grads->defined() ? grads->flat_view(p.offset - offset, local) : Tensor();
  }
}

Parameter* ParameterSet::find(const std::string& name) {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &params_[size_t(it->second)];
}

const Parameter* ParameterSet::find(const std::string& name) const {
  return const_cast<ParameterSet*>(this)->find(name);
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
