// Boxes: where the elements a rank holds sit in a logical tensor, and copies between the
// rank's memory and the row-major byte image of a box.
//
// A checkpoint stores each logical tensor (a parameter, or one of its AdamW moments) as
// boxes — rectangular slices {offset, length} of its global shape — each written
// row-major. What a rank holds of a tensor is a `Region`: a contiguous range of the
// row-major flattening of its local shard (a ZeRO span, or the whole shard). Under tensor
// parallelism the local shard maps to the global tensor through its ShardSpec (a piece of
// each block along one dimension); a flat range of the shard is a few local boxes; each local
// box is one global box per block piece it crosses. region_boxes() does that arithmetic,
// so saving and loading under any layout is intersecting boxes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "peng/core/parameter.h"
#include "peng/core/tensor.h"

namespace peng::ckpt {

struct Box {
  std::vector<int64_t> offset, length;  // per dimension; row-major
  int64_t numel() const;
  bool empty() const { return numel() == 0; }
};

// The overlap of two boxes of the same rank (possibly empty).
Box intersect(const Box& a, const Box& b);
std::string box_str(const Box& b);  // "[0:64, 128:256]"

// What one rank holds (saving) or needs (loading) of a logical tensor.
struct Region {
  std::string tensor;          // logical name, e.g. "model/h.0.attn.c_attn.weight"
  Shape logical_shape;         // the tensor as stored (no padding)
  Shape global_shape;          // the parameter's global shape (padded), >= logical
  ShardSpec spec;              // how the local shard sits in global_shape
  int64_t begin = 0, end = 0;  // flat range of the local shard
  float* data = nullptr;       // the element at flat index `begin`; end - begin follow
};

// A local box of a region and the box of the logical tensor it is.
struct BoxPair {
  Box local, global;  // same lengths; `global` in logical coordinates
};
// The region as boxes, in row-major order of the local flat range. Padding of the global
// shape (vocabulary rows, padded blocks: padded_runs()) belongs to no box.
std::vector<BoxPair> region_boxes(const Region& r);

// Whether a box of `lengths` is one contiguous run of a row-major array of `shape`: ones,
// then one dimension of any length, then whole dimensions.
bool contiguous(const std::vector<int64_t>& lengths, const Shape& shape);
// The row-major flat index of `coords` in `shape`.
int64_t flat_index(const Shape& shape, const std::vector<int64_t>& coords);

// Copies the elements of `lengths` from one row-major array to another. An array is
// `shape`-shaped, its memory starts at flat element `base` of that shape, and the copied
// block starts at coordinates `start` in it.
struct ArrayView {
  Shape shape;
  std::vector<int64_t> start;
  int64_t base = 0;
};
void copy_box(const std::vector<int64_t>& lengths, const float* src, const ArrayView& src_view,
              float* dst, const ArrayView& dst_view);

}  // namespace peng::ckpt
