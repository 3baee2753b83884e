#include "peng/checkpoint/box.h"

#include <algorithm>
#include <cstring>

#include "peng/core/error.h"

namespace peng::ckpt {

int64_t Box::numel() const {
  int64_t n = 1;
  for (int64_t l : length) n *= l;
  return n;
}

Box intersect(const Box& a, const Box& b) {
  PENG_CHECK(a.offset.size() == b.offset.size(), "intersect: boxes of rank ", a.offset.size(),
             " and ", b.offset.size());
  Box out{a.offset, a.length};
  for (size_t d = 0; d < a.offset.size(); ++d) {
    const int64_t lo = std::max(a.offset[d], b.offset[d]);
    const int64_t hi = std::min(a.offset[d] + a.length[d], b.offset[d] + b.length[d]);
    out.offset[d] = lo;
    out.length[d] = std::max<int64_t>(0, hi - lo);
  }
  return out;
}

std::string box_str(const Box& b) {
  std::string s = "[";
  for (size_t d = 0; d < b.offset.size(); ++d) {
    s += (d ? ", " : "") + std::to_string(b.offset[d]) + ":" +
         std::to_string(b.offset[d] + b.length[d]);
  }
  return s + "]";
}

namespace {

// Row-major flat range [a, b) of `shape` (dimensions from `dim` on, under the fixed
// leading coordinates in `prefix`) as boxes, appended in order.
void flat_to_boxes(const Shape& shape, size_t dim, std::vector<int64_t> prefix, int64_t a,
                   int64_t b, std::vector<Box>& out) {
  if (a >= b) return;
  const size_t n = shape.size();
  const auto box = [&](int64_t lo, int64_t hi) {  // rows [lo, hi) of dimension `dim`, whole below
    Box x;
    for (int64_t p : prefix) {
      x.offset.push_back(p);
      x.length.push_back(1);
    }
    x.offset.push_back(lo);
    x.length.push_back(hi - lo);
    for (size_t d = dim + 1; d < n; ++d) {
      x.offset.push_back(0);
      x.length.push_back(shape[d]);
    }
    out.push_back(std::move(x));
  };
  int64_t inner = 1;
  for (size_t d = dim + 1; d < n; ++d) inner *= shape[d];
  if (dim + 1 == n) return box(a, b);
  int64_t r0 = a / inner;
  const int64_t r1 = b / inner;
  const auto row = [&](int64_t r, int64_t lo, int64_t hi) {
    std::vector<int64_t> p = prefix;
    p.push_back(r);
    flat_to_boxes(shape, dim + 1, p, lo, hi, out);
  };
  if (r0 == r1) return row(r0, a % inner, b % inner);
  if (a % inner != 0) row(r0++, a % inner, inner);
  if (r0 < r1) box(r0, r1);
  if (b % inner != 0) row(r1, 0, b % inner);
}

}  // namespace

std::vector<BoxPair> region_boxes(const Region& r) {
  const Shape local = shard_shape(r.tensor, r.global_shape, r.spec);
  PENG_CHECK(r.logical_shape.size() == r.global_shape.size(), r.tensor, ": logical shape ",
             shape_str(r.logical_shape), " and global shape ", shape_str(r.global_shape));
  PENG_CHECK(0 <= r.begin && r.begin <= r.end && r.end <= shape_numel(local), r.tensor, ": range [",
             r.begin, ", ", r.end, ") outside its shard ", shape_str(local));
  std::vector<Box> boxes;
  if (local.empty()) {
    if (r.begin < r.end) boxes.push_back({});  // a scalar
  } else {
    flat_to_boxes(local, 0, {}, r.begin, r.end, boxes);
  }
  std::vector<BoxPair> out;
  int pad_dim = -1;
  const std::vector<PaddedRun> runs =
      padded_runs(r.tensor, r.global_shape, r.logical_shape, r.spec, &pad_dim);
  // A global box to the logical boxes of its real elements: along the padded dimension
  // each run of real elements is shifted to its logical place; the padding has no box.
  const auto emit = [&](const Box& l, const Box& g) {
    if (pad_dim < 0) {
      if (!g.empty()) out.push_back({l, g});
      return;
    }
    const size_t d = size_t(pad_dim);
    for (const PaddedRun& run : runs) {
      const int64_t lo = std::max(g.offset[d], run.global_begin);
      const int64_t hi = std::min(g.offset[d] + g.length[d], run.global_begin + run.length);
      if (lo >= hi) continue;
      Box lp = l, gp = g;
      lp.offset[d] += lo - g.offset[d];
      lp.length[d] = gp.length[d] = hi - lo;
      gp.offset[d] = run.logical_begin + (lo - run.global_begin);
      if (!gp.empty()) out.push_back({std::move(lp), std::move(gp)});
    }
  };
  for (Box& l : boxes) {
    if (r.spec.replicated()) {
      emit(l, l);
      continue;
    }
    // Along the split dimension the local shard is this rank's piece of each block in
    // turn: local index i in block b's piece sits at global start_b + piece_b * k_b + (i -
    // local_start_b).
    const size_t d = size_t(r.spec.dim);
    const int64_t lo = l.offset[d], hi = l.offset[d] + l.length[d];
    int64_t local_at = 0, global_at = 0;
    for (const ShardBlock& b : r.spec.layout(r.global_shape[d])) {
      const int64_t k = b.size / b.pieces;
      const int64_t i0 = std::max(lo, local_at), i1 = std::min(hi, local_at + k);
      if (i0 < i1) {
        Box lp = l, gp = l;
        lp.offset[d] = i0;
        lp.length[d] = gp.length[d] = i1 - i0;
        gp.offset[d] = global_at + r.spec.piece(b) * k + (i0 - local_at);
        emit(std::move(lp), std::move(gp));
      }
      local_at += k;
      global_at += b.size;
    }
  }
  return out;
}

bool contiguous(const std::vector<int64_t>& lengths, const Shape& shape) {
  size_t d = lengths.size();
  while (d > 0 && lengths[d - 1] == shape[d - 1]) --d;  // whole trailing dimensions
  if (d == 0) return true;
  for (size_t i = 0; i + 1 < d; ++i) {  // one partial dimension, ones before it
    if (lengths[i] != 1) return false;
  }
  return true;
}

int64_t flat_index(const Shape& shape, const std::vector<int64_t>& coords) {
  int64_t f = 0;
  for (size_t d = 0; d < shape.size(); ++d) f = f * shape[d] + coords[d];
  return f;
}

void copy_box(const std::vector<int64_t>& lengths, const float* src, const ArrayView& s, float* dst,
              const ArrayView& t) {
  const size_t n = lengths.size();
  PENG_CHECK(
      s.shape.size() == n && t.shape.size() == n && s.start.size() == n && t.start.size() == n,
      "copy_box: rank mismatch");
  for (int64_t l : lengths) {
    if (l == 0) return;
  }
  if (n == 0) {
    dst[-t.base] = src[-s.base];
    return;
  }
  // Strides of both arrays; iterate over every coordinate but the last, copy rows.
  std::vector<int64_t> ss(n, 1), ts(n, 1);
  for (size_t d = n - 1; d > 0; --d) {
    ss[d - 1] = ss[d] * s.shape[d];
    ts[d - 1] = ts[d] * t.shape[d];
  }
  std::vector<int64_t> c(n, 0);
  const size_t row_bytes = size_t(lengths[n - 1]) * sizeof(float);
  while (true) {
    int64_t so = -s.base, to = -t.base;
    for (size_t d = 0; d < n; ++d) {
      so += (s.start[d] + c[d]) * ss[d];
      to += (t.start[d] + c[d]) * ts[d];
    }
    std::memcpy(dst + to, src + so, row_bytes);
    int d = int(n) - 2;  // the next row: an odometer over all dimensions but the last
    for (; d >= 0 && ++c[size_t(d)] == lengths[size_t(d)]; --d) c[size_t(d)] = 0;
    if (d < 0) return;
  }
}

}  // namespace peng::ckpt
