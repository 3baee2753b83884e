// The checkpoint format without a trainer: box arithmetic, the manifest frame and its
// validation, and save/load round trips between different shardings of the same tensors.
#include <gtest/gtest.h>

#include <numeric>

#include "peng/checkpoint/box.h"
#include "peng/checkpoint/manifest.h"
#include "peng/checkpoint/reader.h"
#include "peng/checkpoint/store.h"
#include "peng/checkpoint/writer.h"
#include "peng/core/error.h"
#include "tests/util/test_util.h"

namespace peng::ckpt {
namespace {

Region whole(const std::string& name, const Shape& shape, Tensor& t) {
  return {.tensor = name,
          .logical_shape = shape,
          .global_shape = shape,
          .spec = {},
          .begin = 0,
          .end = shape_numel(shape),
          .data = t.data<float>()};
}

// Tensor of shape `s` holding 0, 1, 2, ... (so every element names its global index).
Tensor iota(const Shape& s) {
  Tensor t = Tensor::empty(s);
  std::iota(t.data<float>(), t.data<float>() + t.numel(), 0.0f);
  return t;
}

TEST(Box, FlatRangeOfAMatrixIsHeadRowsTail) {
  Tensor t = Tensor::empty({4, 5});
  Region r = whole("m", {4, 5}, t);
  r.begin = 3;  // row 0 cols 3..4 | rows 1..2 whole | row 3 cols 0..1
  r.end = 17;
  const std::vector<BoxPair> b = region_boxes(r);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(box_str(b[0].global), "[0:1, 3:5]");
  EXPECT_EQ(box_str(b[1].global), "[1:3, 0:5]");
  EXPECT_EQ(box_str(b[2].global), "[3:4, 0:2]");
  int64_t n = 0;
  for (const BoxPair& p : b) n += p.global.numel();
  EXPECT_EQ(n, 14);
}

TEST(Box, WithinOneRowAndThreeDims) {
  Tensor t = Tensor::empty({2, 3, 4});
  Region r = whole("x", {2, 3, 4}, t);
  r.begin = 5;  // [0,1,1] .. [1,0,2] exclusive of 15 = [1,0,3]
  r.end = 15;
  int64_t n = 0, expect = 5;
  for (const BoxPair& p : region_boxes(r)) {
    // Consecutive boxes continue the flat range exactly.
    const auto& o = p.global.offset;
    EXPECT_EQ(o[0] * 12 + o[1] * 4 + o[2], expect) << box_str(p.global);
    expect += p.global.numel();
    n += p.global.numel();
  }
  EXPECT_EQ(n, 10);
}

TEST(Box, TensorParallelBlocksMapToGlobalColumns) {
  // c_attn-like [2, 12] split in 3 blocks (q|k|v) of 4 columns, 2 parts: part 1 holds
  // columns 2..3, 6..7, 10..11.
  Tensor local = Tensor::empty({2, 6});
  Region r{.tensor = "w",
           .logical_shape = {2, 12},
           .global_shape = {2, 12},
           .spec = {.dim = 1, .parts = 2, .index = 1, .blocks = 3},
           .begin = 0,
           .end = 12,
           .data = local.data<float>()};
  const std::vector<BoxPair> b = region_boxes(r);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(box_str(b[0].global), "[0:2, 2:4]");
  EXPECT_EQ(box_str(b[1].global), "[0:2, 6:8]");
  EXPECT_EQ(box_str(b[2].global), "[0:2, 10:12]");
  EXPECT_EQ(box_str(b[1].local), "[0:2, 2:4]");
}

TEST(Box, VocabularyPaddingIsClippedAway) {
  // wte: 10 real rows padded to 16, split over 2 ranks; rank 1 holds rows 8..15, of which
  // only 8..9 are real.
  Tensor local = Tensor::empty({8, 3});
  Region r{.tensor = "wte",
           .logical_shape = {10, 3},
           .global_shape = {16, 3},
           .spec = {.dim = 0, .parts = 2, .index = 1},
           .begin = 0,
           .end = 24,
           .data = local.data<float>()};
  const std::vector<BoxPair> b = region_boxes(r);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(box_str(b[0].global), "[8:10, 0:3]");
  EXPECT_EQ(box_str(b[0].local), "[0:2, 0:3]");
}

TEST(Box, Contiguity) {
  EXPECT_TRUE(contiguous({1, 3, 4}, {2, 3, 4}));
  EXPECT_TRUE(contiguous({1, 1, 2}, {2, 3, 4}));
  EXPECT_TRUE(contiguous({2, 3, 4}, {2, 3, 4}));
  EXPECT_FALSE(contiguous({2, 2, 4}, {2, 3, 4}));
  EXPECT_FALSE(contiguous({1, 2, 2}, {2, 3, 4}));
  EXPECT_EQ(flat_index({2, 3, 4}, {1, 2, 3}), 23);
}

TEST(Box, CopyBoxMovesASubBlock) {
  Tensor src = iota({4, 5});
  Tensor dst = Tensor::zeros({2, 3});
  copy_box({2, 3}, src.data<float>(), {{4, 5}, {1, 2}, 0}, dst.data<float>(), {{2, 3}, {0, 0}, 0});
  const float* d = dst.data<float>();
  EXPECT_EQ(std::vector<float>(d, d + 6), (std::vector<float>{7, 8, 9, 12, 13, 14}));
  // A destination whose memory starts at flat element 3 of its [2, 3] shape (row 1).
  Tensor row = Tensor::zeros({3});
  copy_box({1, 3}, src.data<float>(), {{4, 5}, {3, 1}, 0}, row.data<float>(), {{2, 3}, {1, 0}, 3});
  EXPECT_EQ(std::vector<float>(row.data<float>(), row.data<float>() + 3),
            (std::vector<float>{16, 17, 18}));
}

proto::Manifest small_manifest() {
  proto::Manifest m;
  m.set_format_version(kFormatVersion);
  m.set_step(7);
  m.set_chunk_bytes(16);
  proto::DataFile* f = m.add_files();
  f->set_name("rank-00000.bin");
  f->set_bytes(24);
  proto::TensorInfo* t = m.add_tensors();
  t->set_name("model/x");
  t->set_dtype("f32");
  t->add_shape(2);
  t->add_shape(3);
  proto::Shard* s = t->add_shards();
  s->set_file("rank-00000.bin");
  s->set_byte_length(24);
  s->add_offset(0);
  s->add_offset(0);
  s->add_length(2);
  s->add_length(3);
  s->add_chunk_xxh3(1);
  s->add_chunk_xxh3(2);
  return m;
}

std::string decode_error(const std::string& bytes) {
  try {
    decode_manifest(bytes, "M");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(Manifest, RoundTripsAndRejectsEveryCorruption) {
  const std::string good = encode_manifest(small_manifest());
  EXPECT_EQ(decode_manifest(good, "M").step(), 7);
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x40;
  EXPECT_NE(decode_error(flipped).find("checksum mismatch"), std::string::npos);
  EXPECT_NE(decode_error(good.substr(0, good.size() - 1)).find("truncated"), std::string::npos);
  EXPECT_NE(decode_error("garbage").find("not a peng checkpoint manifest"), std::string::npos);

  const auto invalid = [](auto edit) {
    proto::Manifest m = small_manifest();
    edit(m);
    return decode_error(encode_manifest(m));
  };
  EXPECT_NE(invalid([](proto::Manifest& m) {
              m.mutable_files(0)->set_name("../etc/passwd");
            }).find("not a plain file name"),
            std::string::npos);
  EXPECT_NE(invalid([](proto::Manifest& m) {
              m.mutable_tensors(0)->mutable_shards(0)->set_length(1, 4);
            }).find("outside the shape"),
            std::string::npos);
  EXPECT_NE(invalid([](proto::Manifest& m) {
              m.mutable_tensors(0)->mutable_shards(0)->set_byte_offset(8);
            }).find("outside rank-00000.bin"),
            std::string::npos);
  EXPECT_NE(invalid([](proto::Manifest& m) {
              m.mutable_tensors(0)->mutable_shards(0)->add_chunk_xxh3(3);
            }).find("3 checksums for 2 chunks"),
            std::string::npos);
  EXPECT_NE(invalid([](proto::Manifest& m) {
              m.mutable_tensors(0)->set_shape(0, 3);
            }).find("hold 6 of its 9 elements"),
            std::string::npos);
  EXPECT_NE(
      invalid([](proto::Manifest& m) { m.mutable_tensors(0)->set_dtype("f64"); }).find("dtype"),
      std::string::npos);
}

// Two "ranks" save a [6, 8] tensor split by columns in 2 blocks x 2 parts and a vector
// split by ZeRO-like flat ranges; a reader with a different split gets every element back.
TEST(SaveLoad, ReshardsBetweenSplits) {
  testing::TempDir dir;
  const Shape ms{6, 8}, vs{10};
  Tensor full_m = iota(ms), full_v = iota(vs);
  std::vector<Tensor> keep;
  std::vector<std::vector<Region>> regions(2);
  for (int rank = 0; rank < 2; ++rank) {
    const ShardSpec spec{.dim = 1, .parts = 2, .index = rank, .blocks = 2};
    Parameter p{.name = "m", .global_shape = ms, .shard = spec};
    keep.push_back(take_shard(full_m, p));
    regions[size_t(rank)] = {{.tensor = "m",
                              .logical_shape = ms,
                              .global_shape = ms,
                              .spec = spec,
                              .begin = 0,
                              .end = 24,
                              .data = keep.back().data<float>()},
                             {.tensor = "v",
                              .logical_shape = vs,
                              .global_shape = vs,
                              .spec = {},
                              .begin = rank * 3,  // rank 0: [0, 3), rank 1: [3, 10)
                              .end = rank ? 10 : 3,
                              .data = full_v.data<float>() + rank * 3}};
  }
  // Both files in one folder, the manifest merged the way commit_checkpoint does. Rank 1
  // writes a snapshot taken before its memory changed.
  proto::Manifest m;
  m.set_format_version(kFormatVersion);
  m.set_chunk_bytes(8);
  const std::filesystem::path step = dir / "step-00000001";
  std::filesystem::create_directories(step);
  std::vector<SavePlan> plans;
  std::vector<char> copy;
  for (int rank = 0; rank < 2; ++rank) {
    plans.push_back(plan_regions(regions[size_t(rank)], rank));
    SavePlan& plan = plans.back();
    if (rank == 1) {
      snapshot(plan, copy);
      keep[1].zero();
      full_v.data<float>()[5] = -1.0f;
    }
    write_plan(plan, step / plan.file, /*chunk_bytes=*/8);
    proto::DataFile* f = m.add_files();
    f->set_name(plan.file);
    f->set_bytes(plan.bytes);
  }
  full_v = iota(vs);  // the values saved
  for (int t = 0; t < 2; ++t) {
    proto::TensorInfo* info = m.add_tensors();
    *info = plans[0].tensors[size_t(t)];
    for (const proto::Shard& s : plans[1].tensors[size_t(t)].shards()) *info->add_shards() = s;
  }
  testing::write_file(step / kManifestFile, encode_manifest(m));

  CheckpointReader reader(step);
  Tensor m_back = reader.read_whole("m"), v_back = reader.read_whole("v");
  EXPECT_EQ(std::vector<float>(m_back.data<float>(), m_back.data<float>() + 48),
            std::vector<float>(full_m.data<float>(), full_m.data<float>() + 48));
  EXPECT_EQ(std::vector<float>(v_back.data<float>(), v_back.data<float>() + 10),
            std::vector<float>(full_v.data<float>(), full_v.data<float>() + 10));
  // A row split over 3 parts, rows [2, 4): only its part is read, and is right.
  Tensor rows = Tensor::zeros({2, 8});
  reader.read({{.tensor = "m",
                .logical_shape = ms,
                .global_shape = ms,
                .spec = {.dim = 0, .parts = 3, .index = 1},
                .begin = 0,
                .end = 16,
                .data = rows.data<float>()}});
  for (int64_t i = 0; i < 16; ++i) EXPECT_EQ(rows.data<float>()[i], float(16 + i));
  // A shape mismatch names the tensor.
  Tensor wrong = Tensor::empty({5, 8});
  try {
    reader.read({whole("m", {5, 8}, wrong)});
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor m has shape [6, 8]"), std::string::npos)
        << e.what();
  }
}

TEST(Store, CommitLatestAndRetention) {
  testing::TempDir dir;
  Tensor x = iota({3});
  for (int64_t step : {1, 2, 3, 4}) {
    proto::Manifest meta;
    meta.set_step(step);
    const std::vector<Region> regions{whole("x", {3}, x)};
    SavePlan plan = plan_regions(regions, 0);
    commit_checkpoint(plan, meta, dir.path(), /*keep_last=*/2, nullptr);
  }
  const auto all = committed_checkpoints(dir.path());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 3);
  EXPECT_EQ(all[1].first, 4);
  EXPECT_EQ(testing::read_file(dir / "latest"), "step-00000004\n");
  EXPECT_EQ(latest_checkpoint(dir.path()), dir / "step-00000004");
  // A stale temporary folder is ignored, and `latest` naming a missing folder falls back
  // to the newest committed one.
  std::filesystem::create_directories(dir / "step-00000009.tmp");
  testing::write_file(dir / "latest", "step-00000007\n");
  EXPECT_EQ(latest_checkpoint(dir.path()), dir / "step-00000004");
}

}  // namespace
}  // namespace peng::ckpt
