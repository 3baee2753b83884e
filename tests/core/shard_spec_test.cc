// ShardSpec beyond equal blocks: a GQA [q | k | v] of unequal fused blocks, kv pieces
// replicated over tp ranks (ownership and partial-gradient ranges), padded blocks (an MLP
// that does not divide by tp), and the checkpoint boxes of each.
#include <gtest/gtest.h>

#include "peng/checkpoint/box.h"
#include "peng/core/error.h"
#include "peng/core/parameter.h"

namespace peng {
namespace {

// A (rows, 2) tensor holding 0, 1, 2, ... row-major.
Tensor iota(int64_t rows) {
  Tensor t = Tensor::empty({rows, 2});
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(i);
  return t;
}

// The first column of each row of a (rows, 2) tensor: its global row numbers when built
// from iota().
std::vector<float> rows_of(const Tensor& t) {
  std::vector<float> out;
  for (int64_t r = 0; r < t.dim(0); ++r) out.push_back(t.data<float>()[2 * r] / 2);
  return out;
}

// A GQA qkv weight in (out, in) layout: 4 query heads, 2 kv heads, head_dim 2: rows
// [q 0..7 | k 8..11 | v 12..15], split over `tp` ranks (kv pieces: min(2, tp)).
Parameter qkv(int tp, int rank) {
  Parameter p;
  p.name = "qkv";
  p.global_shape = p.logical_shape = {16, 2};
  const int kv = std::min(2, tp);
  p.shard = {.dim = 0, .parts = tp, .index = rank, .fused = {{8, tp}, {4, kv}, {4, kv}}};
  return p;
}

TEST(ShardSpec, UnequalFusedBlocksSplitEachBlock) {
  const Tensor full = iota(16);
  std::vector<Tensor> pieces;
  for (int r = 0; r < 2; ++r) pieces.push_back(take_shard(full, qkv(2, r)));
  EXPECT_EQ(rows_of(pieces[0]), (std::vector<float>{0, 1, 2, 3, 8, 9, 12, 13}));
  EXPECT_EQ(rows_of(pieces[1]), (std::vector<float>{4, 5, 6, 7, 10, 11, 14, 15}));
  const Tensor back = join_shards(pieces, qkv(2, 0));
  EXPECT_EQ(rows_of(back), rows_of(full));
  EXPECT_TRUE(replica_ranges(qkv(2, 1)).empty());  // every piece on one rank
  const std::vector<LocalRange> owned = owned_ranges(qkv(2, 1), 1);
  ASSERT_EQ(owned.size(), 1u);
  EXPECT_EQ(owned[0].end, 16);
}

// tp 4 over 2 kv heads: ranks 0, 1 hold kv head 0, ranks 2, 3 kv head 1. Replicas > 0 own
// only their query rows; the kv rows' gradients are partial over each pair.
TEST(ShardSpec, ReplicatedPiecesHaveOneOwner) {
  const Tensor full = iota(16);
  std::vector<Tensor> pieces;
  for (int r = 0; r < 4; ++r) pieces.push_back(take_shard(full, qkv(4, r)));
  EXPECT_EQ(rows_of(pieces[0]), (std::vector<float>{0, 1, 8, 9, 12, 13}));
  EXPECT_EQ(rows_of(pieces[1]), (std::vector<float>{2, 3, 8, 9, 12, 13}));
  EXPECT_EQ(rows_of(pieces[3]), (std::vector<float>{6, 7, 10, 11, 14, 15}));
  EXPECT_EQ(rows_of(join_shards(pieces, qkv(4, 0))), rows_of(full));

  const std::vector<LocalRange> primary = owned_ranges(qkv(4, 2), 2);
  ASSERT_EQ(primary.size(), 1u);
  EXPECT_EQ(primary[0].begin, 0);
  EXPECT_EQ(primary[0].end, 12);  // 6 rows x 2
  const std::vector<LocalRange> replica = owned_ranges(qkv(4, 3), 3);
  ASSERT_EQ(replica.size(), 1u);
  EXPECT_EQ(replica[0].begin, 0);
  EXPECT_EQ(replica[0].end, 4);  // its 2 query rows only
  const std::vector<ReplicaRange> partial = replica_ranges(qkv(4, 3));
  ASSERT_EQ(partial.size(), 2u);  // its k rows, its v rows
  EXPECT_EQ(partial[0].range.begin, 4);
  EXPECT_EQ(partial[0].range.end, 8);
  EXPECT_EQ(partial[1].range.begin, 8);
  EXPECT_EQ(partial[1].range.end, 12);
  EXPECT_EQ(partial[1].replicas, 2);

  // A tied copy that is not the primary owns nothing; a replicated tensor: tp rank 0 only.
  Parameter copy = qkv(4, 0);
  copy.tie_primary = false;
  EXPECT_TRUE(owned_ranges(copy, 0).empty());
  Parameter norm;
  norm.name = "norm";
  norm.global_shape = norm.logical_shape = {2};
  EXPECT_EQ(owned_ranges(norm, 0).size(), 1u);
  EXPECT_TRUE(owned_ranges(norm, 1).empty());
  // A block with pieces that do not divide the ranks is refused.
  Parameter bad = qkv(4, 0);
  bad.shard.fused[1].pieces = 3;
  EXPECT_THROW(shard_shape(bad.name, bad.global_shape, bad.shard), Error);
}

// SwiGLU's [gate | up] of 5 features each over 2 ranks: each block padded to 6 (rows 5 and
// 11 are zero), the logical tensor holds 10 rows.
Parameter gate_up(int rank) {
  Parameter p;
  p.name = "gate_up";
  p.global_shape = {12, 2};
  p.logical_shape = {10, 2};
  p.shard = {.dim = 0, .parts = 2, .index = rank, .fused = {{6, 2, 5}, {6, 2, 5}}};
  return p;
}

TEST(ShardSpec, PaddedBlocksKeepTheirPaddingAtEachBlockEnd) {
  const Tensor logical = iota(10);
  const Tensor global = pad_to_global(logical, gate_up(0));
  ASSERT_EQ(global.shape(), (Shape{12, 2}));
  const std::vector<float> rows = rows_of(global);
  EXPECT_EQ(rows, (std::vector<float>{0, 1, 2, 3, 4, 0, 5, 6, 7, 8, 9, 0}));
  EXPECT_EQ(global.data<float>()[11], 0.0f);  // row 5, the padding: zeros
  EXPECT_EQ(rows_of(cut_to_logical(global, gate_up(0))), rows_of(logical));
  EXPECT_EQ(rows_of(take_shard(global, gate_up(1))), (std::vector<float>{3, 4, 0, 8, 9, 0}));
  int dim = -1;
  const auto runs = padded_runs("gate_up", {12, 2}, {10, 2}, gate_up(0).shard, &dim);
  EXPECT_EQ(dim, 0);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[1].global_begin, 6);
  EXPECT_EQ(runs[1].logical_begin, 5);
  EXPECT_EQ(runs[1].length, 5);
}

// The checkpoint boxes of rank 1's shard: its real rows of each block at their logical
// place, the padding in none.
TEST(ShardSpec, PaddedBlocksHaveNoCheckpointBoxes) {
  Tensor local = Tensor::empty({6, 2});
  const Parameter p = gate_up(1);
  const ckpt::Region r{.tensor = "gate_up",
                       .logical_shape = p.logical_shape,
                       .global_shape = p.global_shape,
                       .spec = p.shard,
                       .begin = 0,
                       .end = 12,
                       .data = local.data<float>()};
  const std::vector<ckpt::BoxPair> boxes = ckpt::region_boxes(r);
  ASSERT_EQ(boxes.size(), 2u);
  EXPECT_EQ(ckpt::box_str(boxes[0].local), "[0:2, 0:2]");
  EXPECT_EQ(ckpt::box_str(boxes[0].global), "[3:5, 0:2]");
  EXPECT_EQ(ckpt::box_str(boxes[1].local), "[3:5, 0:2]");
  EXPECT_EQ(ckpt::box_str(boxes[1].global), "[8:10, 0:2]");
  // A replica's kv pieces map to the same logical rows as the primary's.
  const Parameter q = qkv(4, 3);
  const ckpt::Region kv{.tensor = "qkv",
                        .logical_shape = q.logical_shape,
                        .global_shape = q.global_shape,
                        .spec = q.shard,
                        .begin = 4,
                        .end = 12,
                        .data = local.data<float>()};
  const std::vector<ckpt::BoxPair> kv_boxes = ckpt::region_boxes(kv);
  ASSERT_EQ(kv_boxes.size(), 2u);
  EXPECT_EQ(ckpt::box_str(kv_boxes[0].global), "[10:12, 0:2]");
  EXPECT_EQ(ckpt::box_str(kv_boxes[1].global), "[14:16, 0:2]");
}

}  // namespace
}  // namespace peng
